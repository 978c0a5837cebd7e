"""The record every stage sees, and the input files it comes from."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# doc_id = file_index << LINE_BITS | (line - 1): stable from the resolved input list and the line
# (or row) number alone, so every stage and every engine derives the same id without a counting pass.
LINE_BITS = 40
MAX_LINES_PER_FILE = 1 << LINE_BITS


def make_doc_id(file_index: int, line: int) -> int:
    """Global id of the document on 1-based `line` of input file `file_index`."""
    return (file_index << LINE_BITS) | (line - 1)


def split_doc_id(doc_id: int) -> tuple[int, int]:
    """(file_index, 1-based line) of a global id."""
    return doc_id >> LINE_BITS, (doc_id & (MAX_LINES_PER_FILE - 1)) + 1


@dataclass(slots=True)
class Document:
    doc_id: int
    text: str
    pile_set_name: str
    meta: dict[str, Any]
    file: str
    line: int  # 1-based line (jsonl) or row (parquet / datasets) number


@dataclass(frozen=True, slots=True)
class InputFile:
    index: int  # position in the resolved input list: the high bits of doc_id
    path: str
    kind: str  # jsonl | jsonl.zst | jsonl.gz | parquet | hf-disk | hf-hub
    split: str | None = field(default=None)  # for hf-disk DatasetDicts and hf-hub data
    # The name recorded in artifacts: the path relative to the inputs' common root (`#split`
    # appended), so the same files in another directory give the same bytes. None = the path.
    name: str | None = field(default=None)

    @property
    def label(self) -> str:
        """What artifacts record for this input (`name`, else the path with `#split`)."""
        if self.name is not None:
            return self.name
        return f"{self.path}#{self.split}" if self.split else self.path

    @property
    def where(self) -> str:
        """The full path (with `#split`), for messages that must let the user find the file."""
        return f"{self.path}#{self.split}" if self.split else self.path
