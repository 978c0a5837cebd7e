"""The record every stage sees, and the input files it comes from."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# the id layout is pipeline.docid's; these names stay for the reader's public API
from pipeline.docid import LINE_BITS, MAX_LINES_PER_FILE
from pipeline.docid import make as make_doc_id
from pipeline.docid import split as split_doc_id

__all__ = [
    "LINE_BITS",
    "MAX_LINES_PER_FILE",
    "Document",
    "InputFile",
    "make_doc_id",
    "split_doc_id",
]


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
