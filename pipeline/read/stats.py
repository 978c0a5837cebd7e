"""Mergeable reader statistics: per-source counts like the Pile paper's component table."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class SourceStats:
    documents: int = 0
    bytes: int = 0  # UTF-8 bytes of text
    empty: int = 0

    def merge(self, other: SourceStats) -> None:
        self.documents += other.documents
        self.bytes += other.bytes
        self.empty += other.empty


@dataclass
class ReadStats:
    files: int = 0
    lines: int = 0
    documents: int = 0
    bytes: int = 0
    empty: int = 0
    blank_lines: int = 0
    rejected: int = 0
    rejected_by_reason: dict[str, int] = field(default_factory=dict)
    sources: dict[str, SourceStats] = field(default_factory=dict)
    # UTF-8 byte counts cost a full encode of every non-ASCII text; readers that only need the
    # documents (no stats asked for) turn them off.
    count_bytes: bool = field(default=True, repr=False, compare=False)

    def source(self, name: str) -> SourceStats:
        s = self.sources.get(name)
        if s is None:
            s = self.sources[name] = SourceStats()
        return s

    def reject(self, reason_kind: str) -> None:
        self.rejected += 1
        self.rejected_by_reason[reason_kind] = self.rejected_by_reason.get(reason_kind, 0) + 1

    def merge(self, other: ReadStats) -> ReadStats:
        self.files += other.files
        self.lines += other.lines
        self.documents += other.documents
        self.bytes += other.bytes
        self.empty += other.empty
        self.blank_lines += other.blank_lines
        self.rejected += other.rejected
        for k, v in other.rejected_by_reason.items():
            self.rejected_by_reason[k] = self.rejected_by_reason.get(k, 0) + v
        for name, s in other.sources.items():
            self.source(name).merge(s)
        return self

    def to_dict(self) -> dict[str, Any]:
        total = self.bytes or 1
        return {
            "files": self.files,
            "lines": self.lines,
            "documents": self.documents,
            "bytes": self.bytes,
            "empty": self.empty,
            "blank_lines": self.blank_lines,
            "rejected": self.rejected,
            "rejected_by_reason": dict(sorted(self.rejected_by_reason.items())),
            "sources": {
                name: {
                    "documents": s.documents,
                    "bytes": s.bytes,
                    "empty": s.empty,
                    "mean_document_bytes": (s.bytes / s.documents) if s.documents else 0.0,
                    "share": s.bytes / total,
                }
                for name, s in sorted(self.sources.items(), key=lambda kv: (-kv[1].bytes, kv[0]))
            },
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ReadStats:
        st = cls(
            files=d["files"],
            lines=d["lines"],
            documents=d["documents"],
            bytes=d["bytes"],
            empty=d["empty"],
            blank_lines=d.get("blank_lines", 0),
            rejected=d["rejected"],
            rejected_by_reason=dict(d.get("rejected_by_reason", {})),
        )
        for name, s in d.get("sources", {}).items():
            st.sources[name] = SourceStats(s["documents"], s["bytes"], s["empty"])
        return st

    def format_table(self) -> str:
        """Component table: source, documents, size, mean document size, share of bytes."""
        d = self.to_dict()
        rows = [("pile_set_name", "documents", "MiB", "mean KiB", "share", "empty")]
        for name, s in d["sources"].items():
            rows.append(
                (
                    name,
                    f"{s['documents']:,}",
                    f"{s['bytes'] / 2**20:,.2f}",
                    f"{s['mean_document_bytes'] / 1024:,.2f}",
                    f"{100 * s['share']:.2f}%",
                    f"{s['empty']:,}",
                )
            )
        mean = (self.bytes / self.documents / 1024) if self.documents else 0.0
        rows.append(
            (
                "total",
                f"{self.documents:,}",
                f"{self.bytes / 2**20:,.2f}",
                f"{mean:,.2f}",
                "100.00%" if self.bytes else "-",
                f"{self.empty:,}",
            )
        )
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        lines = []
        for j, r in enumerate(rows):
            cells = [r[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(r[1:], widths[1:])]
            lines.append("  ".join(cells))
            if j == 0 or j == len(rows) - 2:
                lines.append("  ".join("-" * w for w in widths))
        lines.append(
            f"files {self.files:,}  lines {self.lines:,}  rejected {self.rejected:,}"
            + (
                " ("
                + ", ".join(f"{k}: {v}" for k, v in sorted(self.rejected_by_reason.items()))
                + ")"
                if self.rejected
                else ""
            )
            + f"  empty (skipped) {self.empty:,}  blank lines {self.blank_lines:,}"
        )
        return "\n".join(lines)
