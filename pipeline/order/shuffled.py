"""The pre-shuffled layout: `document.idx` + `document-000NN-of-000MM.bin`, Pythia's form.

Item g of the output is training sample g (seq_length + 1 tokens, the dataset's dtype: uint16 for
GPT-NeoX-20B), for g < train_iters x global_batch, so step N is the contiguous byte range
[N*global_batch*(seq_length+1)*itemsize, (N+1)*global_batch*(seq_length+1)*itemsize).

`document.idx` is MMIDIDX v1 (pipeline.shards.mmidx) with sizes all seq_length + 1, pointers
g*(seq_length+1)*itemsize and, by default (doc_idx="pythia"), a doc_idx of one entry [0], like
EleutherAI's published `document.idx` (1,757,184,042 bytes for Pythia = 34 + 12 x 146,432,000 +
8 x 1: the builder never called end_document). Megatron-LM's `IndexedDataset` asserts
`document_indices[-1] == sequence_count` unless `fast_cache_load=True`; doc_idx="full" writes
0..N (one document per sample, N + 1 entries, 8 x N more bytes), which every reader accepts.
The `.bin` is cut into byte shards of `shard_size` bytes (Pythia: 30e9) named
as Pythia's `utils/shard_memmap.py` does: `document-{i:05d}-of-{last:05d}.bin` with
last = total_bytes // shard_size, i = 0..last (so Pythia's 21 shards are `-of-00020`). With
shard_size=None a single `document.bin` is written. A manifest `document.manifest.json` (kind
"preshuffled") is written last; it records the source dataset and index maps for provenance.

This module owns the layout: its names, the bytes of `document.idx`, the manifest's kind, the
reader (`PreshuffledData`: step N is one contiguous byte range, read in O(global_batch)), and the
structural `check` of a directory; the `pile preshuffle` stage that writes it is
pipeline.order.preshuffle.
"""

from __future__ import annotations

import glob
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline.config import combine_fingerprints
from pipeline.errors import ConfigError, InputError, IntegrityError, PipelineError
from pipeline.manifest import read_manifest
from pipeline.order.config import OrderConfig
from pipeline.order.integrity import ReadCheck, damaged
from pipeline.order.mapfiles import HashOf, manifest_config, manifests_for, rebuild_command
from pipeline.order.steps import check_step
from pipeline.shards.mmidx import HEADER, MAGIC, VERSION, MMIDXIndex, dtype_code
from pipeline.shards.names import SHARD_GLOB, parse_shard_name, shard_names_for

if TYPE_CHECKING:
    from pipeline.order.document import DocumentData

log = logging.getLogger(__name__)

PRESHUFFLED_NAME = "document"
PRESHUFFLED_MANIFEST = "document.manifest.json"
PRESHUFFLED_KIND = "preshuffled"
DOC_IDX_FORMS = ("pythia", "full")
IDX_CHUNK = 1 << 22
CHECK_CHUNK = 1 << 24  # samples per chunk of `check`: bounded memory at any scale


# ----------------------------------------------------------------------------------------------
# names and the bytes of document.idx


def shard_names(
    total_bytes: int, shard_size: int | None, name: str = PRESHUFFLED_NAME
) -> list[str]:
    """Pythia's shard_memmap naming: shards 0..total // shard_size, `-of-` the last index."""
    if shard_size is None:
        return [f"{name}.bin"]
    return shard_names_for(total_bytes, shard_size, name)


def is_bin_name(filename: str, name: str = PRESHUFFLED_NAME) -> bool:
    """True for `{name}.bin` and any `{name}-NNNNN-of-MMMMM.bin` (a shard of any count)."""
    if filename == name + ".bin":
        return True
    parsed = parse_shard_name(filename)
    return parsed is not None and parsed[0] == name


def check_doc_idx_form(doc_idx: str) -> None:
    if doc_idx not in DOC_IDX_FORMS:
        raise ConfigError(
            f"doc_idx {doc_idx!r} not in {', '.join(DOC_IDX_FORMS)}: pythia writes [0] like "
            "EleutherAI's document.idx, full writes 0..N, which Megatron-LM's IndexedDataset needs"
        )


def preshuffled_bytes(
    config: OrderConfig, itemsize: int = 2, doc_idx: str = "pythia"
) -> tuple[int, int]:
    """(bytes of the shards, bytes of `document.idx`) that run_preshuffle writes for `config`."""
    check_doc_idx_form(doc_idx)
    n = config.train_samples
    d = 1 if doc_idx == "pythia" else n + 1
    return n * (config.seq_length + 1) * itemsize, HEADER.size + 12 * n + 8 * d


def preshuffled_index_chunks(
    n_samples: int, sample_tokens: int, dtype, chunk: int = IDX_CHUNK, doc_idx: str = "pythia"
) -> Iterator[bytes]:
    """The bytes of `document.idx`, streamed: header, sizes, pointers, then doc_idx: [0]
    ("pythia") or 0..n_samples ("full")."""
    check_doc_idx_form(doc_idx)
    dt = np.dtype(dtype)
    d = 1 if doc_idx == "pythia" else n_samples + 1
    yield HEADER.pack(MAGIC, VERSION, dtype_code(dt), n_samples, d)
    for a in range(0, n_samples, chunk):
        yield np.full(min(chunk, n_samples - a), sample_tokens, dtype="<i4").tobytes()
    step = sample_tokens * dt.itemsize
    for a in range(0, n_samples, chunk):
        p = np.arange(a, min(a + chunk, n_samples), dtype="<i8")
        p *= step
        yield p.tobytes()
    for a in range(0, d, chunk):
        yield np.arange(a, min(a + chunk, d), dtype="<i8").tobytes()


def read_preshuffled_manifest(prefix: str | os.PathLike) -> dict[str, Any] | None:
    """The `{prefix}.manifest.json` of a pre-shuffled dataset when it is one (kind
    "preshuffled"), else None."""
    p = Path(prefix)
    m = p.parent / (p.name + ".manifest.json")
    if m.exists():
        doc = read_manifest(m)
        if doc.get("kind") == PRESHUFFLED_KIND:
            return doc
    return None


# ----------------------------------------------------------------------------------------------
# reading


class ByteRanges:
    """Read byte ranges of the concatenation of files (a joined .bin or its byte shards)."""

    def __init__(self, files: list[Path], check: ReadCheck | None = None) -> None:
        self.files = files
        self.check = check  # each file is checked the first time a read touches it
        sizes = [f.stat().st_size for f in files]
        self.starts = np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)])
        self.total = int(self.starts[-1])

    def read(self, a: int, b: int) -> bytearray:
        if not 0 <= a <= b <= self.total:
            raise IntegrityError(
                f"byte range [{a}, {b}) is outside the {self.total} bytes of {self.files[0].name}"
                f"{' ...' if len(self.files) > 1 else ''}; the data is truncated"
            )
        buf = bytearray(b - a)
        view = memoryview(buf)
        i = int(np.searchsorted(self.starts, a, side="right") - 1)
        got = 0
        while got < b - a:
            lo = a + got - int(self.starts[i])
            n = min(b - a - got, int(self.starts[i + 1] - self.starts[i]) - lo)
            if n > 0:
                if self.check is not None:
                    self.check.touch(self.files[i])
                with open(self.files[i], "rb", buffering=0) as f:
                    f.seek(lo)
                    m = f.readinto(view[got : got + n])
                if m != n:
                    raise IntegrityError(f"{self.files[i]}: short read at byte {lo}")
                got += n
            i += 1
        return buf


def find_bin_files(prefix: str | os.PathLike) -> list[Path]:
    """`{prefix}.bin`, or Pythia-style shards `{prefix}-00000-of-000NN.bin` (all NN+1 of them)."""
    p = Path(str(prefix))
    joined = Path(str(prefix) + ".bin")
    if joined.exists():
        return [joined]
    shards = []
    for q in sorted(p.parent.glob(glob.escape(p.name) + SHARD_GLOB)):
        parsed = parse_shard_name(q.name)
        if parsed and parsed[0] == p.name:
            shards.append((parsed[1], parsed[2], q))
    if not shards:
        raise InputError(
            f"no data for {p}: neither {joined.name} nor shards {p.name}-00000-of-000NN.bin in "
            f"{p.parent}."
        )
    lasts = {s[1] for s in shards}
    if len(lasts) != 1:
        raise IntegrityError(
            f"{p.parent}: shards of {p.name} disagree on their count: {sorted(lasts)}"
        )
    last = lasts.pop()
    have = [s[0] for s in shards]
    if have != list(range(last + 1)):
        missing = sorted(set(range(last + 1)) - set(have))
        raise InputError(
            f"{p.parent}: shard(s) {', '.join(f'{p.name}-{i:05d}-of-{last:05d}.bin' for i in missing[:5])} "
            f"missing ({len(have)} of {last + 1} present)"
        )
    return [s[2] for s in shards]


def preshuffled_doc_idx_form(index: MMIDXIndex) -> str:
    """ "pythia" (doc_idx = [0], EleutherAI's published file) or "full" (0..N, what Megatron-LM's
    IndexedDataset requires); anything else is a damaged index (IntegrityError naming it). Only
    the ends are checked: doc_idx is never used to read pre-shuffled samples."""
    n, d = len(index), int(index.doc_idx.size)
    first = int(index.doc_idx[0]) if d else None
    if d == 1 and first == 0:
        return "pythia"
    if d == n + 1 and first == 0 and int(index.doc_idx[-1]) == n:
        return "full"
    shown = index.doc_idx[:3].tolist() + (["...", int(index.doc_idx[-1])] if d > 3 else [])
    raise damaged(
        index.path,
        f"its doc_idx has {d} entries {shown}; a pre-shuffled index has either [0] (Pythia's "
        f"form) or 0..{n} ({n + 1} entries, the full form) for its {n} samples",
    )


def tokens_per_sample(index: MMIDXIndex, total: int, recorded: int | None) -> int:
    """Tokens per sample of a pre-shuffled index, cross-checked: sizes[0], sizes[-1], the pointer
    stride, the .bin size and the manifest's count must agree; one that does not is named."""
    n, isz = len(index), index.dtype.itemsize

    def ratio(a: int, b: int) -> int | float:
        return a // b if a % b == 0 else a / b

    views: dict[str, int | float] = {"sizes[0]": int(index.sizes[0])}
    views[f"sizes[{n - 1}]"] = int(index.sizes[-1])
    if n > 1:
        views["pointers[1] / itemsize"] = ratio(int(index.pointers[1]), isz)
        views[f"pointers[{n - 1}] / ({n - 1} x itemsize)"] = ratio(
            int(index.pointers[-1]), (n - 1) * isz
        )
    binview = f".bin bytes / ({n} samples x itemsize)"
    if total % (n * isz) == 0:
        views[binview] = total // (n * isz)
    if recorded is not None:
        want = int(recorded)
    else:
        values = list(views.values())
        want = max(set(values), key=lambda v: (values.count(v), v == values[0]))
    wrong = {k: v for k, v in views.items() if v != want}
    if not wrong or wrong.keys() == {binview}:
        return want  # the index agrees: a wrong .bin size is reported by the caller
    agree = [k for k in views if k not in wrong]
    said = ", ".join(f"{k} = {v}" for k, v in wrong.items())
    idx_views = {k: v for k, v in views.items() if k != binview}
    if recorded is not None and len(set(idx_views.values())) == 1:
        got = next(iter(idx_views.values()))
        raise IntegrityError(
            f"{index.path}: samples of {got} tokens, but its manifest records {want}: the index "
            "and document.manifest.json are from different runs. Re-run `pile preshuffle`."
        )
    src = ", ".join((["the manifest"] if recorded is not None else []) + agree)
    raise damaged(index.path, f"{said}, but {src} give {want} tokens per sample")


class PreshuffledData:
    """A pre-shuffled `document` dataset: item g = training sample g (seq_length + 1 tokens)."""

    form = "preshuffled"

    def __init__(
        self,
        prefix: str | os.PathLike,
        global_batch: int,
        source: DocumentData | None = None,
        source_error: str | None = None,
        *,
        check: ReadCheck | None = None,
        sample_tokens: int | None = None,
    ) -> None:
        self.prefix = str(prefix)
        self.source_error = source_error  # why the recorded source could not be opened, if so
        self.check = check
        if check is not None:
            check.touch(self.prefix + ".idx")
        self.index = MMIDXIndex(self.prefix + ".idx")
        self.files = find_bin_files(self.prefix)
        self.bytes = ByteRanges(self.files, check)
        self.dtype = self.index.dtype
        self._itemsize = self.dtype.itemsize
        n = len(self.index)
        if n == 0:
            raise IntegrityError(f"{self.prefix}.idx holds no samples")
        self.doc_idx_form = preshuffled_doc_idx_form(self.index)
        self.seq_length = tokens_per_sample(self.index, self.bytes.total, sample_tokens) - 1
        self.global_batch = int(global_batch)
        self.num_steps = n // self.global_batch
        if self.num_steps == 0:
            raise ConfigError(
                f"{self.prefix}: {n} samples is less than one global batch of {global_batch}; "
                "pass the --global-batch the data was written with."
            )
        expected = int(self.index.pointers[-1]) + int(self.index.sizes[-1]) * self._itemsize
        if self.bytes.total != expected:
            total = self.bytes.total
            how = (
                f"{total - expected} bytes too many (a shard is too long or from another build)"
                if total > expected
                else f"{expected - total} bytes too few (a shard is truncated or missing)"
            )
            raise IntegrityError(
                f"{self.prefix}: the .bin data holds {total} bytes but the index needs "
                f"{expected}: {how}. Check the shards with `pile verify`."
            )
        self.source = source
        if source is not None and source.seq_length != self.seq_length:
            raise ConfigError(
                f"--source dataset uses seq_length {source.seq_length} but {self.prefix} holds "
                f"samples of {self.seq_length + 1} tokens"
            )

    def _range(self, g0: int, g1: int) -> np.ndarray:
        sizes = np.asarray(self.index.sizes[g0:g1])
        L1 = self.seq_length + 1
        if (sizes != L1).any():
            bad = g0 + int(np.flatnonzero(sizes != L1)[0])
            raise damaged(
                self.index.path,
                f"sizes[{bad}] = {int(self.index.sizes[bad])} tokens, but every sample of this "
                f"pre-shuffled dataset has {L1}",
            )
        step = L1 * self._itemsize
        ptrs = np.asarray(self.index.pointers[g0:g1])
        want = np.arange(g0, g1, dtype=np.int64) * step
        if (ptrs != want).any():
            bad = int(np.flatnonzero(ptrs != want)[0])
            raise damaged(
                self.index.path,
                f"pointers[{g0 + bad}] = {int(ptrs[bad])}, but sample {g0 + bad} of {L1} tokens "
                f"starts at byte {int(want[bad])}",
            )
        a, b = g0 * step, g1 * step
        buf = self.bytes.read(a, b)
        return np.frombuffer(buf, dtype=self.dtype).reshape(g1 - g0, L1)

    def samples(self, g: np.ndarray) -> np.ndarray:
        g = np.asarray(g, dtype=np.int64)
        if g.size and (g.min() < 0 or g.max() >= len(self.index)):
            raise ConfigError(f"sample index out of range 0..{len(self.index) - 1}")
        out = np.empty((g.size, self.seq_length + 1), dtype=self.dtype)
        # contiguous runs are read in one go
        i = 0
        while i < g.size:
            j = i + 1
            while j < g.size and g[j] == g[j - 1] + 1:
                j += 1
            out[i:j] = self._range(int(g[i]), int(g[j - 1]) + 1)
            i = j
        return out

    def step(self, n: int) -> np.ndarray:
        check_step(n, self.num_steps, f"the pre-shuffled data {self.prefix}")
        gb = self.global_batch
        return self._range(n * gb, (n + 1) * gb)

    def steps(self, a: int, b: int) -> np.ndarray:
        check_step(a, self.num_steps, f"the pre-shuffled data {self.prefix}")
        check_step(b, self.num_steps, f"the pre-shuffled data {self.prefix}")
        gb = self.global_batch
        return self._range(a * gb, (b + 1) * gb)

    def provenance(self, g: np.ndarray, with_sidecar: bool = True) -> list[list[dict[str, Any]]]:
        if self.source is None:
            why = (
                f" (the source recorded in its manifest is not usable: {self.source_error})"
                if self.source_error
                else ""
            )
            raise InputError(
                f"{self.prefix} is a pre-shuffled dataset: it has no document boundaries. "
                "Provenance needs the document-level dataset and its index maps: pass --source "
                f"PREFIX (the *_text_document prefix it was built from){why}."
            )
        return self.source.provenance(g, with_sidecar)


# ----------------------------------------------------------------------------------------------
# checks (`pile verify`)


def check(directory: str | os.PathLike) -> list[str]:
    """Problems of the pre-shuffled dataset in `directory` (empty if fine), each naming its file.

    `document.idx` a readable MMIDIDX index whose doc_idx has a known form; the data files
    complete (`document.bin`, or shards 0..last of one count); every sample the same number of
    tokens (checked against the manifest's count when there is one) at regular pointers; the
    data exactly as long as the index needs. Reads only the index, in chunks, and the files'
    sizes (their bytes are `pile verify`'s sha256 check)."""
    prefix = Path(directory) / PRESHUFFLED_NAME
    try:
        index = MMIDXIndex(str(prefix) + ".idx")
        files = find_bin_files(prefix)
        doc = read_preshuffled_manifest(prefix)
    except PipelineError as e:
        return [str(e)]
    n = len(index)
    if n == 0:
        return [f"{index.path}: holds no samples"]
    problems = []
    try:
        preshuffled_doc_idx_form(index)
    except IntegrityError as e:
        problems.append(str(e))
    total = sum(f.stat().st_size for f in files)
    recorded = ((doc or {}).get("counts") or {}).get("sample_tokens")
    try:
        L1 = tokens_per_sample(index, total, recorded if isinstance(recorded, int) else None)
    except IntegrityError as e:
        return problems + [str(e)]
    step = L1 * index.dtype.itemsize
    for a in range(0, n, CHECK_CHUNK):
        sizes = np.asarray(index.sizes[a : a + CHECK_CHUNK])
        ptrs = np.asarray(index.pointers[a : a + CHECK_CHUNK])
        bad = np.flatnonzero((sizes != L1) | (ptrs != np.arange(a, a + sizes.size) * step))
        if bad.size:
            g = a + int(bad[0])
            problems.append(
                f"{index.path}: sample {g} has sizes[{g}] = {int(sizes[bad[0]])} tokens at "
                f"pointers[{g}] = {int(ptrs[bad[0]])}; every sample has {L1} tokens and sample "
                f"{g} starts at byte {g * step}"
            )
            break
    if total != n * step:
        problems.append(
            f"{prefix.parent}: the data files ({', '.join(f.name for f in files)}) hold {total} "
            f"bytes but {index.path.name} needs {n * step} ({n} samples of {L1} tokens)"
        )
    return problems


def check_preshuffled_source(
    manifest_path: Path, doc: dict, sha256_of: HashOf, quick: bool = False
) -> tuple[list[tuple[str, str]], list[str]]:
    """Preshuffled data whose recorded order differs from the index maps (or dataset) it names.

    `source.order_fingerprint` is the index-map manifest's config_fingerprint at preshuffle time
    (config + the dataset `.idx` sha256); maps rebuilt since, or a re-tokenized dataset, change
    it, and then the preshuffled samples are not those the maps (or the dataset) give.
    """
    from pipeline.order.preshuffle import preshuffle_command  # the stage that writes the layout

    src = doc.get("source")
    cfg = doc.get("config") or {}
    if not isinstance(src, dict) or not isinstance(src.get("prefix"), str):
        return [], []
    recorded = src.get("order_fingerprint")
    prefix = Path(os.path.normpath(manifest_path.parent / src["prefix"]))
    maps_dir = (
        Path(os.path.normpath(manifest_path.parent / src["maps_dir"]))
        if isinstance(src.get("maps_dir"), str)
        else prefix.parent
    )
    fix = f"then re-run `{preshuffle_command(prefix, maps_dir, manifest_path.parent, cfg)}`"
    for m, mdoc in manifests_for(prefix, maps_dir, cfg):
        if "idx_sha256" not in (mdoc.get("dataset") or {}):
            continue  # preshuffle then records the bare config fingerprint: nothing to compare
        if mdoc.get("config_fingerprint") != recorded:
            return [
                (
                    str(manifest_path),
                    f"preshuffled from another order than the index maps {m} (order fingerprint "
                    f"{recorded}, the maps have {mdoc.get('config_fingerprint')}); {fix}",
                )
            ], []
    config = manifest_config(cfg)
    idx = Path(str(prefix) + ".idx")
    if quick or config is None or not idx.is_file() or not recorded:
        return [], []
    current = combine_fingerprints(config.fingerprint(), sha256_of(idx))
    if current != recorded and recorded != config.fingerprint():
        return [
            (
                str(manifest_path),
                f"preshuffled from a different dataset: {idx} changed since (order fingerprint "
                f"now {current}, recorded {recorded}); rebuild the index maps with "
                f"`{rebuild_command(prefix, maps_dir, cfg)}`, {fix}",
            )
        ], []
    return [], []
