"""The document id: the one owner of its layout.

doc_id = file_index << LINE_BITS | (line - 1): the position of the input file in the resolved input
list and the 0-based line (or row) number. It is stable from the input list and the line alone, so
every stage, worker count, work unit and engine derives the same id without a counting pass. No
other module does this bit arithmetic: scalar and numpy forms are both here.
"""

from __future__ import annotations

import numpy as np

LINE_BITS = 40
MAX_LINES_PER_FILE = 1 << LINE_BITS
ROW_MASK = MAX_LINES_PER_FILE - 1
# ids are int64 everywhere (parquet, .npy): the file index has the remaining 63 - LINE_BITS bits
MAX_FILES = 1 << (63 - LINE_BITS)


def make(file_index, line):
    """Global id of the document on 1-based `line` of input file `file_index` (ints or arrays)."""
    return (file_index << LINE_BITS) | (line - 1)


def split(doc_id):
    """(file_index, 1-based line) of an id (an int or an int64 array)."""
    return doc_id >> LINE_BITS, (doc_id & ROW_MASK) + 1


def file_index(doc_id):
    """The input file index of an id (an int or an int64 array)."""
    return doc_id >> LINE_BITS


def row(doc_id):
    """The 0-based line (row) of an id (an int or an int64 array)."""
    return doc_id & ROW_MASK


def base(file_index: int) -> int:
    """The id of line 1 of a file: ids of file i are base(i) .. base(i + 1) - 1."""
    return file_index << LINE_BITS


def file_bounds(
    file_index: int, start_line: int = 1, stop_line: int | None = None
) -> tuple[int, int]:
    """Half-open id range [lo, hi) of lines start_line .. stop_line - 1 (to the end with None)."""
    lo = base(file_index) | (start_line - 1)
    hi = (base(file_index) | (stop_line - 1)) if stop_line is not None else base(file_index + 1)
    return lo, hi


def file_indices(doc_ids: np.ndarray) -> np.ndarray:
    """file_index of each id of an array, as int64."""
    return np.asarray(doc_ids, dtype=np.int64) >> LINE_BITS
