"""`pile inspect`: the report of a training step and its output formats (text, summary, npy).

`step_report` describes step N (or one sample of it) of an opened dataset (pipeline.order.data
`open_data`): its tokens, decoded text and provenance; `format_text` / `format_summary` render it,
`save_steps_npy` writes steps A..B as batch_viewer.py's .npy.

The readers once lived here and stay importable from here: `open_data`, `resolve_data`,
`resolve_form`, `find_datasets` (pipeline.order.data), `DocumentData` (pipeline.order.document),
`PreshuffledData` and the layout's names (pipeline.order.shuffled).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.errors import ConfigError
from pipeline.order.data import find_datasets, open_data, resolve_data, resolve_form
from pipeline.order.document import DocumentData, Segments
from pipeline.order.shuffled import (
    DOC_IDX_FORMS,
    PRESHUFFLED_KIND,
    PRESHUFFLED_MANIFEST,
    PRESHUFFLED_NAME,
    PreshuffledData,
    find_bin_files,
)
from pipeline.order.steps import check_step

__all__ = [
    "DOC_IDX_FORMS",
    "PRESHUFFLED_KIND",
    "PRESHUFFLED_MANIFEST",
    "PRESHUFFLED_NAME",
    "DocumentData",
    "PreshuffledData",
    "Segments",
    "find_bin_files",
    "find_datasets",
    "format_summary",
    "format_text",
    "open_data",
    "resolve_data",
    "resolve_form",
    "save_steps_npy",
    "step_report",
    "to_jsonable",
]


def to_jsonable(obj: Any) -> Any:
    return json.loads(
        json.dumps(obj, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o))
    )


def step_report(
    data: DocumentData | PreshuffledData,
    step: int,
    *,
    sample: int | None = None,
    decode: bool = False,
    provenance: bool = False,
    tokens: np.ndarray | None = None,
) -> dict[str, Any]:
    """JSON-able description of step N (or one sample of it): tokens, text, provenance."""
    gb = data.global_batch
    if sample is not None and sample < 0:
        raise ConfigError(f"--sample {sample} must be >= 0: samples of a step are 0..{gb - 1}")
    if sample is not None and not 0 <= sample < gb:
        raise ConfigError(
            f"--sample {sample} is outside the batch: a step has samples 0..{gb - 1} "
            f"(global_batch={gb})"
        )
    batch = data.step(step) if tokens is None else tokens
    rows = range(gb) if sample is None else [sample]
    g = np.array([step * gb + i for i in rows], dtype=np.int64)
    prov = data.provenance(g) if provenance else None
    enc = None
    if decode:
        from pipeline.tokenize.encoder import load_encoder

        enc = load_encoder()
    samples = []
    for j, i in enumerate(rows):
        d: dict[str, Any] = {"batch_index": i, "sample": int(g[j]), "tokens": batch[i].tolist()}
        if enc is not None:
            d["text"] = enc.decode(batch[i].tolist())
        if prov is not None:
            d["provenance"] = prov[j]
        samples.append(d)
    return {
        "step": step,
        "form": data.form,
        "data": data.prefix,
        "global_batch": gb,
        "seq_length": data.seq_length,
        "dtype": np.dtype(data.dtype).name,
        "samples_range": [step * gb, (step + 1) * gb],
        "samples": samples,
    }


def format_text(report: dict[str, Any]) -> str:
    lines = [
        f"step {report['step']}: samples [{report['samples_range'][0]}, "
        f"{report['samples_range'][1]}) of {report['form']} data {report['data']} "
        f"(global_batch={report['global_batch']}, seq_length={report['seq_length']}, "
        f"{report['dtype']})"
    ]
    for s in report["samples"]:
        lines.append(f"sample {s['batch_index']} (training sample {s['sample']}):")
        lines.append("  tokens: " + " ".join(str(t) for t in s["tokens"]))
        if "text" in s:
            lines.append("  text: " + json.dumps(s["text"], ensure_ascii=False))
        for p in s.get("provenance", []):
            where = ""
            if "doc_id" in p:
                where = f" doc_id {p['doc_id']} [{p['pile_set_name']}] {p['file']}:{p['line']}"
            lines.append(
                f"  item {p['item']}{where} epoch copy {p['epoch']}: item tokens "
                f"[{p['item_tokens'][0]}, {p['item_tokens'][1]}) -> sample tokens "
                f"[{p['sample_tokens'][0]}, {p['sample_tokens'][1]})"
            )
    return "\n".join(lines) + "\n"


SUMMARY_CHARS = 80  # decoded characters shown per sample


SUMMARY_DOCS = 5  # source documents listed per sample


def format_summary(
    report: dict[str, Any], *, origin: str | None = None, no_provenance: str | None = None
) -> str:
    """A readable page for a terminal: per sample its token count, the source documents it
    spans (pile_set_name, doc_id, file:line, tokens taken) and the first SUMMARY_CHARS
    characters of its decoded text. `report` is step_report(..., decode=True[, provenance])."""
    r0, r1 = report["samples_range"]
    form = "pre-shuffled" if report["form"] == PRESHUFFLED_KIND else "document-level"
    lines = [
        f"step {report['step']} of {report['data']} ({form}): training samples {r0}..{r1 - 1}, "
        f"{report['seq_length'] + 1} tokens each"
    ]
    if origin:
        lines.append(origin)
    if no_provenance:
        lines.append(f"no source documents: {no_provenance}")
    names = [p.get("pile_set_name", "") for s in report["samples"] for p in s.get("provenance", ())]
    width = max(map(len, names), default=0)
    for s in report["samples"]:
        prov = s.get("provenance")
        n = len(s["tokens"])
        docs = "" if prov is None else f" from {len(prov)} document{'s' * (len(prov) != 1)}"
        lines.append(f"sample {s['batch_index']} (training sample {s['sample']}): {n} tokens{docs}")
        for p in (prov or [])[:SUMMARY_DOCS]:
            took = p["sample_tokens"][1] - p["sample_tokens"][0]
            src = (
                f"{p['pile_set_name']:<{width}}  doc_id {p['doc_id']}  {p['file']}:{p['line']}"
                if "doc_id" in p
                else f"item {p['item']}"
            )
            copy = f"  (epoch copy {p['epoch']})" if p["epoch"] else ""
            lines.append(f"  {took:>6} tokens  {src}{copy}")
        if prov is not None and len(prov) > SUMMARY_DOCS:
            lines.append(f"  ... and {len(prov) - SUMMARY_DOCS} more documents")
        if "text" in s:
            t = s["text"]
            head = json.dumps(t[:SUMMARY_CHARS], ensure_ascii=False)
            lines.append(f"  text: {head}{' ...' if len(t) > SUMMARY_CHARS else ''}")
    lines.append(
        "all token ids: --format text (with --decode --provenance for full text and spans), "
        "--format json or --format npy"
    )
    return "\n".join(lines) + "\n"


def save_steps_npy(
    data: DocumentData | PreshuffledData, a: int, b: int, path: Path
) -> tuple[int, ...]:
    """Steps a..b (inclusive) as one .npy of shape ((b-a+1)*global_batch, seq_length+1), written
    one step at a time (memory O(batch)); same bytes as batch_viewer.py's np.save."""
    from pipeline.io import atomic_open

    if b < a:
        raise ConfigError(f"--end-step {b} is before --start-step {a}")
    check_step(a, data.num_steps, "the data")
    check_step(b, data.num_steps, "the data")
    gb = data.global_batch
    shape = ((b - a + 1) * gb, data.seq_length + 1)
    dtype = np.dtype(data.dtype)
    header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": shape}
    with atomic_open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, header) if _header_version(header) == (1, 0) else (
            np.lib.format.write_array_header_2_0(f, header)
        )
        for n in range(a, b + 1):
            f.write(np.ascontiguousarray(data.step(n)).tobytes())
    return shape


def _header_version(header: dict[str, Any]) -> tuple[int, int]:
    # np.save picks 1.0 unless the header does not fit a 2-byte length
    return (1, 0) if len(repr(header)) < 65000 else (2, 0)
