"""`pile find`: every (step, sample, token offset, epoch copy) at which a document or a token
sequence entered training.

A document (item i of the token dataset) occurs once per epoch copy e at doc_idx position
k = item_pos[i, e] (pipeline.exposure.inverse). Its flat start F(k) follows from sample_idx, whose
row j is flat token j*seq_length = F(doc_idx position) + offset: take the last row r before k, then
add the sizes of the few items between (fewer than seq_length + 1). The copy's tokens
[F, F + size) lie in samples s = ceil((F - L) / L) .. (F + size - 1) // L (sample s is flat tokens
[s*L, s*L + L], consecutive samples share one token), trained as sample g = inv_shuffle[s] at step
g // global_batch when g < train_iters x global_batch. Cost: O(epochs x (log samples + seq_length))
memory-mapped reads per document.

A token sequence is found in the document-level `.bin` (pipeline.exposure.textindex) and each
match (item, offset) is mapped the same way; in a pre-shuffled dataset the match (item g, offset)
is training sample g itself.
"""

from __future__ import annotations

import bisect
from typing import Any

import numpy as np

from pipeline import docid
from pipeline.errors import ConfigError, InputError
from pipeline.exposure.inverse import InverseMaps

# Pythia's 154 checkpoints: step0, 1, 2, 4, ..., 512, then every 1000 steps to 143000
PYTHIA_CHECKPOINTS = [0] + [2**i for i in range(10)] + list(range(1000, 143001, 1000))


def first_checkpoint(step: int | None) -> int | None:
    """The first Pythia checkpoint stepN that has seen training step `step` (N > step)."""
    if step is None:
        return None
    i = bisect.bisect_right(PYTHIA_CHECKPOINTS, step)
    return PYTHIA_CHECKPOINTS[i] if i < len(PYTHIA_CHECKPOINTS) else None


class Locator:
    """Flat positions <-> samples for one set of index maps + their inverse."""

    def __init__(self, inv: InverseMaps, sizes: np.ndarray) -> None:
        self.inv = inv
        m = inv.maps
        self.maps = m
        self.sizes = sizes
        self.L = m.config.seq_length
        self.gb = m.config.global_batch
        self.trained = m.config.train_samples
        self.num_total = m.num_total
        self.n_items = len(sizes)

    def flat_start(self, k: int) -> int:
        """Flat token index of the first token of doc_idx position k."""
        col = self.maps.sample_idx
        lo, hi = 0, self.num_total + 1  # first row with col[j, 0] >= k
        while lo < hi:
            mid = (lo + hi) // 2
            if int(col[mid, 0]) < k:
                lo = mid + 1
            else:
                hi = mid
        r = lo - 1
        if r < 0:
            return 0
        kr, orr = int(col[r, 0]), int(col[r, 1])
        between = np.asarray(self.maps.doc_idx[kr:k]).astype(np.int64)
        return r * self.L - orr + int(self.sizes[between].astype(np.int64).sum())

    def pieces(self, item: int, a: int, b: int) -> list[dict[str, Any]]:
        """Every (copy, sample) piece of item tokens [a, b): trained ones with their step."""
        L = self.L
        out = []
        for e, k in enumerate(np.asarray(self.inv.item_pos[item]).tolist()):
            F = self.flat_start(int(k))
            t0, t1 = F + a, F + b - 1
            s_lo = max(0, -(-(t0 - L) // L))
            s_hi = min(self.num_total - 1, t1 // L)
            for s in range(s_lo, s_hi + 1):
                x0, x1 = max(t0, s * L), min(t1, s * L + L)
                if x0 > x1:
                    continue
                g = int(self.inv.inv_shuffle[s])
                out.append(
                    {
                        "step": g // self.gb if g < self.trained else None,
                        "sample": g,
                        "batch_index": g % self.gb,
                        "offset": x0 - s * L,
                        "tokens": x1 - x0 + 1,
                        "epoch": e,
                        "item_tokens": [x0 - F, x1 - F + 1],
                        "whole": x0 == t0 and x1 == t1,
                    }
                )
        return out

    def locate(self, s: int, offset: int) -> tuple[int, int, int]:
        """(doc_idx position, item, offset in item) of token `offset` of sample s."""
        k, o = (int(x) for x in self.maps.sample_idx[s])
        t = o + offset  # tokens past the start of position k
        while True:
            size = int(self.sizes[int(self.maps.doc_idx[k])])
            if t < size:
                return k, int(self.maps.doc_idx[k]), t
            t -= size
            k += 1


def _sorted(occ: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(occ, key=lambda d: (d["sample"], d["offset"]))


def summarize(occ: list[dict[str, Any]], epochs: int) -> dict[str, Any]:
    """First step seen in part, first step by which a whole copy was seen, and the checkpoints."""
    trained = [o for o in occ if o["step"] is not None]
    first = min((o["step"] for o in trained), default=None)
    whole = None
    for e in range(epochs):
        copy = [o for o in occ if o["epoch"] == e]
        last = _whole_by(copy)
        if last is not None:
            whole = last if whole is None else min(whole, last)
    return {
        "first_step": first,
        "first_checkpoint": None if first is None else first + 1,
        "first_pythia_checkpoint": first_checkpoint(first),
        "first_step_whole": whole,
        "first_checkpoint_whole": None if whole is None else whole + 1,
        "beyond_training": len(occ) - len(trained),
    }


def _whole_by(pieces: list[dict[str, Any]]) -> int | None:
    """The first step by which the trained pieces of one copy cover all its tokens (a token
    shared by two samples counts at the earlier one), or None."""
    if not pieces:
        return None
    a0 = min(p["item_tokens"][0] for p in pieces)
    b1 = max(p["item_tokens"][1] for p in pieces)
    for n in sorted({p["step"] for p in pieces if p["step"] is not None}):
        reach = a0
        for a, b in sorted(
            p["item_tokens"] for p in pieces if p["step"] is not None and p["step"] <= n
        ):
            if a > reach:
                break
            reach = max(reach, b)
        if reach >= b1:
            return n
    return None


def find_item(loc: Locator, item: int) -> dict[str, Any]:
    if not 0 <= item < loc.n_items:
        raise InputError(f"item {item} is not in the dataset: it has items 0..{loc.n_items - 1}")
    size = int(loc.sizes[item])
    occ = loc.pieces(item, 0, size)
    epochs = loc.inv.item_pos.shape[1]
    trained = [_clean(o) for o in _sorted(occ) if o["step"] is not None]
    return {"item": item, "tokens": size, **summarize(occ, epochs), "occurrences": trained}


def _clean(o: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in o.items() if k != "whole"}


def text_occurrences(loc: Locator, item: int, a: int, n: int) -> list[dict[str, Any]]:
    """Occurrences of item tokens [a, a+n) (a match of a token sequence) in training: one per
    (copy, sample) holding the whole sequence; a copy split across two samples is listed once
    per piece with "split": true."""
    out = []
    pieces = loc.pieces(item, a, a + n)
    for e in sorted({p["epoch"] for p in pieces}):
        copy = [p for p in pieces if p["epoch"] == e]
        whole = [p for p in copy if p["whole"]]
        for p in whole or copy:
            out.append({**_clean(p), "item": item, "item_offset": a, "split": not whole})
    return out


def resolve_item(
    prov, *, doc: int | None, file: str | None, line: int | None, sorted_ids: bool | None
) -> int:
    """Item index of a reader doc_id, or of file + line, from the provenance table."""
    if prov is None:
        raise InputError(
            "this dataset has no provenance sidecar (.docs.parquet), so doc ids and file:line are "
            "unknown; pass --item N (the item index in the .idx) instead."
        )
    if file is not None:
        names = {v: k for k, v in prov.files.items()}
        if file not in names:
            shown = ", ".join(sorted(names)[:10])
            raise InputError(
                f"--file {file!r} is not an input of this dataset; its files are named relative to "
                f"the inputs' common directory: {shown}{' ...' if len(names) > 10 else ''}"
            )
        if line is None or line < 1:
            raise ConfigError(f"--line {line} must be a line number >= 1 with --file")
        doc = docid.make(names[file], line)
    ids = prov.doc_id
    if sorted_ids:
        i = int(np.searchsorted(ids, doc))
        hit = i < len(ids) and int(ids[i]) == doc
    else:
        w = np.flatnonzero(np.asarray(ids) == doc)
        hit, i = bool(w.size), int(w[0]) if w.size else -1
    if not hit:
        where = f" ({file}:{line})" if file is not None else ""
        raise InputError(
            f"doc_id {doc}{where} is not in this dataset: it was never read, was empty, or was "
            "removed by dedup (a deduplicated dataset keeps one document per cluster; `pile dedup`'s "
            "removed.parquet lists the removed ones)."
        )
    return i
