"""pipeline.docid owns the id layout: scalar and vectorised forms agree, and no other module does
the bit arithmetic."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from pipeline import docid

PIPELINE = Path(docid.__file__).resolve().parent


@pytest.mark.parametrize(
    "fi,line",
    [(0, 1), (0, 2), (3, 17), (29, 1 << 30), (docid.MAX_FILES - 1, docid.MAX_LINES_PER_FILE)],
)
def test_make_and_split_round_trip(fi, line):
    d = docid.make(fi, line)
    assert docid.split(d) == (fi, line)
    assert docid.file_index(d) == fi and docid.row(d) == line - 1
    assert 0 <= d < 2**63  # an int64


def test_known_answers():
    assert docid.make(0, 1) == 0
    assert docid.make(1, 2) == (1 << 40) | 1
    assert docid.base(2) == 2 << 40
    assert docid.file_bounds(1, 3, 5) == (docid.make(1, 3), docid.make(1, 5))
    assert docid.file_bounds(1) == (docid.base(1), docid.base(2))


def test_vectorised_forms_match_scalar():
    fi = np.array([0, 1, 7, 29], dtype=np.int64)
    line = np.array([1, 5, 1 << 20, 3], dtype=np.int64)
    ids = docid.make(fi, line)
    assert ids.dtype == np.int64
    assert ids.tolist() == [docid.make(int(a), int(b)) for a, b in zip(fi, line)]
    f2, l2 = docid.split(ids)
    assert f2.tolist() == fi.tolist() and l2.tolist() == line.tolist()
    assert docid.file_indices(ids.astype(np.uint64)).tolist() == fi.tolist()


def test_ids_sort_by_file_then_line():
    pairs = [(2, 1), (0, 9), (1, 1), (0, 1)]
    assert sorted(pairs) == sorted(pairs, key=lambda p: docid.make(*p))


def _code_lines(path: Path):
    """(line number, code without strings and comments) of a Python file."""
    import tokenize

    parts: dict[int, list[str]] = {}
    with open(path, "rb") as f:
        for tok in tokenize.tokenize(f.readline):
            if tok.type in (tokenize.OP, tokenize.NAME, tokenize.NUMBER):
                parts.setdefault(tok.start[0], []).append(tok.string)
    return [(n, " ".join(t)) for n, t in sorted(parts.items())]


def test_no_other_module_does_the_id_arithmetic():
    shifts = re.compile(r"(<<|>>) (LINE_BITS|40|self \. line_bits|prov \. line_bits)\b")
    offenders = [
        f"{p.relative_to(PIPELINE.parent)}:{n}"
        for p in sorted(PIPELINE.rglob("*.py"))
        if p.name != "docid.py"
        for n, code in _code_lines(p)
        if shifts.search(code.replace("1 << 40", "TiB"))  # 2**40 as a byte unit is not an id
    ]
    assert offenders == [], "use pipeline.docid for: " + ", ".join(offenders)
