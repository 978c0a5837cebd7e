"""Read stage: stream Pile-shaped inputs as `Document`s with stable global ids.

from pipeline.read import iter_documents, ReadConfig
for doc in iter_documents(["train/"], ReadConfig()):
    doc.doc_id, doc.text, doc.pile_set_name, doc.meta, doc.file, doc.line
"""

from pipeline.read.config import ON_ERROR_POLICIES, ReadConfig
from pipeline.read.document import (
    LINE_BITS,
    Document,
    InputFile,
    make_doc_id,
    split_doc_id,
)
from pipeline.read.inputs import SUPPORTED, file_kind, resolve_inputs
from pipeline.read.reader import (
    UNKNOWN_SOURCE,
    collect_stats,
    iter_documents,
    iter_file,
    read_file_stats,
)
from pipeline.read.stats import ReadStats, SourceStats

__all__ = [
    "LINE_BITS",
    "ON_ERROR_POLICIES",
    "SUPPORTED",
    "UNKNOWN_SOURCE",
    "Document",
    "InputFile",
    "ReadConfig",
    "ReadStats",
    "SourceStats",
    "collect_stats",
    "file_kind",
    "iter_documents",
    "iter_file",
    "make_doc_id",
    "read_file_stats",
    "resolve_inputs",
    "split_doc_id",
]
