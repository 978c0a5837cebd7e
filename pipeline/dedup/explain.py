"""`pile dedup --explain DOC_ID`: a removed document next to the document kept in its place.

Reads the evidence row of removed.parquet (kept_id, MinHash estimate, exact Jaccard, rule), fetches
both texts from the inputs (which must be the run's inputs: the manifest's labels are compared),
recomputes the exact Jaccard of their word n-gram shingles with the stage's normalisation and
prints the two texts side by side, the words covered by a shingle the two documents share
highlighted (bold green on a terminal; between `[[` and `]]` otherwise), so a user can judge the
removal by eye. Words are the whitespace-separated words of the original text; each is compared
after the stage's normalisation (lowercase, NFC).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from pipeline import docid
from pipeline.errors import ConfigError, IntegrityError
from pipeline.manifest import read_manifest
from pipeline.read import ReadConfig, iter_file, resolve_inputs

HIGHLIGHT = ("\x1b[1;32m", "\x1b[0m")
PLAIN = ("[[", "]]")
_WORD = re.compile(r"\S+")


def _text_of(files, doc_id: int, read_config: ReadConfig) -> tuple[str, str]:
    fi, row = docid.file_index(doc_id), docid.row(doc_id)
    if fi >= len(files):
        raise ConfigError(
            f"doc_id {doc_id} names input file {fi}, but only {len(files)} input(s) were given; "
            "give the inputs of the dedup run, in the same order."
        )
    f = files[fi]
    for doc in iter_file(f, read_config):
        if doc.doc_id == doc_id:
            return doc.text, f"{f.label}:{doc.line}"
        if doc.doc_id > doc_id:
            break
    raise IntegrityError(
        f"{f.where} line {row + 1}: document {doc_id} is not in the input any more; the input "
        "changed since `pile dedup` ran. Rerun it."
    )


def shared_words(a: str, b: str, ngram: int) -> tuple[list[tuple[str, bool]], ...]:
    """The words of a and b, each flagged when a shingle shared by both documents covers it,
    and the exact Jaccard of the two shingle sets."""
    wa = [m.group() for m in _WORD.finditer(a)]
    wb = [m.group() for m in _WORD.finditer(b)]

    def norm(words: list[str]) -> list[str]:
        return [unicodedata.normalize("NFC", w.lower()) for w in words]

    na, nb = norm(wa), norm(wb)

    def shingles(w: list[str]) -> list[tuple[str, ...]]:
        if 0 < len(w) < ngram:
            return [tuple(w)]
        return [tuple(w[i : i + ngram]) for i in range(len(w) - ngram + 1)]

    sa, sb = shingles(na), shingles(nb)
    common = set(sa) & set(sb)
    union = len(set(sa) | set(sb))

    def flags(words: list[str], sh: list[tuple[str, ...]]) -> list[bool]:
        out = [False] * len(words)
        width = len(sh[0]) if sh else 0
        for i, s in enumerate(sh):
            if s in common:
                for k in range(i, i + width):
                    out[k] = True
        return out

    fa, fb = flags(na, sa), flags(nb, sb)
    jac = len(common) / union if union else 0.0
    return list(zip(wa, fa)), list(zip(wb, fb)), jac  # type: ignore[return-value]


def _wrap(words: Sequence[tuple[str, bool]], width: int, marks: tuple[str, str], plain: bool):
    """Lines of (visible length, rendered text); shared runs wrapped in the marks."""
    lines: list[tuple[int, str]] = []
    cur: list[tuple[str, bool]] = []
    cur_len = 0
    extra = len(marks[0]) + len(marks[1]) if plain else 0

    def emit() -> None:
        nonlocal cur, cur_len
        text, vis, in_run = [], 0, False
        for i, (w, s) in enumerate(cur):
            sep = " " if i else ""
            if s and not in_run:
                text.append(sep + marks[0])
                sep = ""
                in_run = True
            elif not s and in_run:
                text.append(marks[1])
                in_run = False
            text.append(sep + w)
        if in_run:
            text.append(marks[1])
        vis = sum(len(w) for w, _ in cur) + max(len(cur) - 1, 0)
        if plain:
            vis = len("".join(text))
        lines.append((vis, "".join(text)))
        cur, cur_len = [], 0

    for w, s in words:
        while len(w) + extra > width:  # a word longer than the column: hard split
            if cur:
                emit()
            cut = max(width - extra, 1)
            cur = [(w[:cut], s)]
            emit()
            w = w[cut:]
        opens = extra if s and (not cur or not cur[-1][1]) else 0  # a run's marks
        need = len(w) + (1 if cur else 0) + opens
        if cur and cur_len + need > width:
            emit()
            need = len(w) + (extra if s else 0)
        cur.append((w, s))
        cur_len += need
    if cur:
        emit()
    return lines


def side_by_side(
    left: Sequence[tuple[str, bool]],
    right: Sequence[tuple[str, bool]],
    width: int,
    color: bool,
) -> str:
    col = max((width - 3) // 2, 10)
    marks = HIGHLIGHT if color else PLAIN
    la = _wrap(left, col, marks, not color)
    lb = _wrap(right, col, marks, not color)
    out = []
    for i in range(max(len(la), len(lb))):
        va, ta = la[i] if i < len(la) else (0, "")
        _, tb = lb[i] if i < len(lb) else (0, "")
        out.append(ta + " " * max(col - va, 0) + " | " + tb)
    return "\n".join(out)


def explain(
    inputs: Sequence[Any],
    dedup_dir: str | Path,
    doc_id: int,
    read_config: ReadConfig | None = None,
    width: int = 160,
    color: bool = False,
) -> str:
    """The explanation of one removed document (see the module doc) as printable text."""
    out = Path(dedup_dir)
    manifest = read_manifest(out / "manifest.json")
    if manifest.get("kind") != "dedup":
        raise ConfigError(
            f"{out}: not the output of `pile dedup` (manifest kind {manifest.get('kind')!r}); "
            "give its --out directory."
        )
    files = resolve_inputs(inputs)
    labels = [f.label for f in files]
    if manifest.get("inputs") is not None and labels != manifest["inputs"]:
        raise ConfigError(
            f"inputs {labels} are not the inputs of the dedup run in {out} "
            f"({manifest['inputs']}); give the same inputs in the same order."
        )
    table = pq.read_table(out / "removed.parquet")
    ids = table.column("doc_id").to_pylist()
    if doc_id not in ids:
        in_place = [r for r, k in zip(ids, table.column("kept_id").to_pylist()) if k == doc_id]
        if in_place:
            return (
                f"doc_id {doc_id} was kept; removed in its place: "
                + ", ".join(str(r) for r in in_place)
                + f". Explain one with --explain {in_place[0]}.\n"
            )
        example = f" (e.g. {ids[0]})" if ids else " (this run removed none)"
        raise ConfigError(
            f"doc_id {doc_id} was not removed by the dedup run in {out}; allowed: a doc_id of "
            f"removed.parquet{example}."
        )
    row = table.slice(ids.index(doc_id), 1).to_pylist()[0]
    ngram = int(manifest.get("config", {}).get("ngram", 5))
    text_r, where_r = _text_of(files, doc_id, read_config or ReadConfig())
    text_k, where_k = _text_of(files, row["kept_id"], read_config or ReadConfig())
    wr, wk, jac = shared_words(text_r, text_k, ngram)
    rec = row.get("jaccard")
    head = [
        f"removed {doc_id} ({where_r})  |  kept {row['kept_id']} ({where_k})",
        f"rule met: {row.get('rule')}; MinHash estimate {row.get('minhash_estimate')}; exact "
        f"Jaccard of {ngram}-word shingles {jac:.6f}"
        + (f" (recorded {rec})" if rec is not None else " (not recorded in this mode)"),
        "shared spans: " + ("highlighted" if color else "between [[ and ]]"),
        "",
    ]
    return "\n".join(head) + side_by_side(wr, wk, width, color) + "\n"
