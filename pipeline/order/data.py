"""DATA arguments of `pile inspect` & co.: find, resolve and open a dataset in either form.

DATA is a document-level dataset prefix (its index maps next to it or in a maps dir), a
pre-shuffled `document` dataset (its directory or prefix), a `.idx`/`.bin`/shard path of either,
or a directory to search. `open_data` returns a `DocumentData` (pipeline.order.document) or a
`PreshuffledData` (pipeline.order.shuffled); both answer `.step(N)`, `.steps(A, B)`,
`.samples(g)` and `.provenance(g)`.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from pipeline.errors import ConfigError, InputError, IntegrityError
from pipeline.order.config import OrderConfig
from pipeline.order.document import DocumentData
from pipeline.order.integrity import ReadCheck
from pipeline.order.mapfiles import index_map_paths
from pipeline.order.shuffled import PRESHUFFLED_NAME, PreshuffledData, read_preshuffled_manifest
from pipeline.shards.mmidx import data_paths
from pipeline.shards.names import parse_shard_name

log = logging.getLogger(__name__)


def strip_data(data: str) -> str:
    """The dataset prefix of a `.idx`, `.bin` or shard path (anything else as given)."""
    for ext in (".idx", ".bin"):
        if data.endswith(ext):
            return data[: -len(ext)]
    parsed = parse_shard_name(Path(data).name)
    if parsed:
        return str(Path(data).parent / parsed[0])
    return data


FIND_DEPTH = 3  # pile_out/standard/preshuffled/document.idx is 3 levels below pile_out


FIND_MAX = 20  # datasets listed in the "pass one of these" error


def find_datasets(directory: str | os.PathLike) -> list[str]:
    """DATA arguments found in `directory` and up to FIND_DEPTH levels below it, sorted: the
    prefix of every `*.idx` (a pre-shuffled `document.idx` as its directory), spelled as
    `directory`/relative path. Bounded walk (hidden and `_`-prefixed directories skipped), so a
    wrong argument such as the build's output directory gets a useful error quickly."""
    root = Path(directory)
    found: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel = Path(dirpath).relative_to(root)
        depth = len(rel.parts)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith((".", "_")))
        if depth >= FIND_DEPTH:
            dirnames[:] = []
        for f in sorted(filenames):
            if not f.endswith(".idx"):
                continue
            if f == PRESHUFFLED_NAME + ".idx":
                found.append(str(root / rel) if depth else str(root))
            else:
                found.append(str(root / rel / f[: -len(".idx")]))
        if len(found) > FIND_MAX:
            break
    return sorted(found)


def resolve_data(data: str | os.PathLike) -> tuple[str, str]:
    """(prefix, form guess) of DATA: a prefix, a .idx/.bin/shard path, or a directory."""
    s = str(data)
    p = Path(s)
    if p.is_dir():
        if (p / (PRESHUFFLED_NAME + ".idx")).exists():
            return str(p / PRESHUFFLED_NAME), "preshuffled"
        cands = sorted(p.glob("*_text_document.idx"))
        if len(cands) == 1:
            return str(cands[0])[: -len(".idx")], "document"
        found = find_datasets(p)
        if found:
            shown = found[:FIND_MAX] + (["..."] if len(found) > FIND_MAX else [])
            raise InputError(
                f"{p} is a directory, not one dataset; pass one of the datasets found in it "
                f"(a *_text_document prefix or a pre-shuffled directory): {', '.join(shown)}."
            )
        raise InputError(
            f"{p} is a directory without {PRESHUFFLED_NAME}.idx or *_text_document.idx files (none "
            f"within {FIND_DEPTH} levels below it either); pass a token dataset prefix (e.g. "
            "pile_out/standard/pile_text_document) or a pre-shuffled directory (e.g. "
            "pile_out/standard/preshuffled)."
        )
    prefix = strip_data(s)
    if not Path(prefix + ".idx").exists():
        raise InputError(
            f"{data}: no dataset here ({prefix}.idx not found). Pass a token dataset prefix "
            "(without .bin/.idx) or a pre-shuffled `document` directory."
        )
    if Path(prefix).name == PRESHUFFLED_NAME or read_preshuffled_manifest(prefix) is not None:
        return prefix, "preshuffled"
    return prefix, "document"


def resolve_form(data: str | os.PathLike, form: str = "auto") -> tuple[str, str]:
    """(dataset prefix, "document" | "preshuffled") of DATA; `form` "auto" guesses from disk."""
    if form not in ("auto", "document", "preshuffled"):
        raise ConfigError(f"--form {form!r} not in auto, document, preshuffled")
    prefix, guess = resolve_data(data)
    return prefix, guess if form == "auto" else form


def open_data(
    data: str | os.PathLike,
    config: OrderConfig,
    *,
    maps_dir: str | os.PathLike | None = None,
    form: str = "auto",
    source: str | os.PathLike | None = None,
    check_dataset: str = "quick",
    verify_hashes: bool = False,
) -> DocumentData | PreshuffledData:
    """Open DATA for inspection (form "auto" | "document" | "preshuffled").

    Every file read is checked against the manifest that lists it: its size always, its sha256
    with `verify_hashes` (pipeline.order.integrity; only the files a read touches are hashed)."""
    prefix, form = resolve_form(data, form)
    check = ReadCheck(verify_hashes)
    if form == "document":
        # every one of these is read for any step: check them before anything parses them, so
        # damage is reported as such (exit 4 naming the file), not as a puzzling config mismatch
        paths = index_map_paths(prefix, config, maps_dir)
        for p in (
            *data_paths(prefix),
            *(paths[r] for r in ("doc_idx", "sample_idx", "shuffle_idx")),
        ):
            if p.is_file():
                check.touch(p)
        return DocumentData(prefix, config, maps_dir, check_dataset=check_dataset, check=check)
    src = None
    source_error = None
    m = read_preshuffled_manifest(prefix)
    if source is not None:
        src = DocumentData(
            strip_data(str(source)), config, maps_dir, check_dataset=check_dataset, check=check
        )
    else:
        info = (m or {}).get("source") or {}
        if info.get("prefix"):
            sp = (Path(prefix).parent / info["prefix"]).resolve()
            md = info.get("maps_dir")
            md = (Path(prefix).parent / md).resolve() if md else None
            if Path(str(sp) + ".idx").exists():
                try:
                    src = DocumentData(sp, config, md, check_dataset=check_dataset, check=check)
                except (InputError, ConfigError) as e:
                    log.info("source of %s not usable for provenance: %s", prefix, e)
                    source_error = str(e)
                except IntegrityError as e:
                    # damaged source maps/data must not hide the pre-shuffled tokens, which are
                    # complete on their own; --provenance reports why it has no source
                    log.warning("source of %s not usable for provenance: %s", prefix, e)
                    source_error = str(e)
    recorded = ((m or {}).get("counts") or {}).get("sample_tokens")
    return PreshuffledData(
        prefix,
        config.global_batch,
        src,
        source_error,
        check=check,
        sample_tokens=recorded if isinstance(recorded, int) else None,
    )
