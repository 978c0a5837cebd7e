"""The tokenize stage's merge: task results, in task order, appended to the dataset.

Each task's partial `.bin` is appended to the MMIDIDX writer (`MMIDXWriter.append_bin_file`) and
its sidecar rows to the sidecar writer, which rewrites them in fixed-size row groups, so every
output byte is the same for any worker count; the partials stay until the whole merge is done (a
run killed while merging resumes from them). The index's doc_idx is written once from the merged
sizes (0, 1, ..., N), never concatenated from partials (gpt-neox's merge forgot to extend it).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.engine.base import Executor
from pipeline.read import ReadStats
from pipeline.shards.mmidx import MMIDXWriter
from pipeline.tokenize import records
from pipeline.tokenize.plan import Task
from pipeline.tokenize.sidecar import SidecarWriter

log = logging.getLogger(__name__)

COUNTS = ("documents", "tokens", "excluded", "zero_token", "literal_eod")


@dataclass
class Merged:
    """The merged counts of every task."""

    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTS, 0))
    per_source: dict[str, dict[str, int]] = field(default_factory=dict)
    per_file: dict[str, dict[str, int]] = field(default_factory=dict)
    read_stats: ReadStats = field(default_factory=ReadStats)
    exclude_matched: int = 0
    reused: int = 0

    def add(self, res: dict[str, Any]) -> None:
        self.reused += bool(res.get("reused"))
        for k in self.counts:
            self.counts[k] += res["counts"][k]
        add_source(self.per_source, res["per_source"])
        pf = self.per_file.setdefault(res["file"], {"documents": 0, "tokens": 0})
        pf["documents"] += res["counts"]["documents"]
        pf["tokens"] += res["counts"]["tokens"]
        self.exclude_matched += res["exclude_matched"]
        if res["stats"] is not None:
            self.read_stats.merge(ReadStats.from_dict(res["stats"]))


def merge_tasks(
    executor: Executor,
    tasks: Sequence[Task],
    writer: MMIDXWriter,
    side: SidecarWriter,
    progress: Callable[[dict[str, Any]], None] | None = None,
) -> Merged:
    """Run (or reuse) every task on `executor` and append the results in task order."""
    merged = Merged()
    # records.run_task is looked up here, at call time: a test substitutes a slow one
    for res in executor.imap(records.run_task, tasks):
        # partials stay until the merge is complete: a run killed while merging resumes from them
        writer.append_bin_file(Path(res["bin"]), res["sizes"])
        side.append_npz(Path(res["sidecar"]))
        merged.add(res)
        if progress is not None:
            progress(res)
        _fault_after_merge(res["seq"] + 1)
    return merged


def add_source(total: dict[str, dict[str, int]], part: dict[str, dict[str, int]]) -> None:
    for name, d in part.items():
        t = total.setdefault(name, {k: 0 for k in d})
        for k, v in d.items():
            t[k] = t.get(k, 0) + v


def _fault_after_merge(merged: int) -> None:
    """Test hook: `PILE_FAULT=tokenize-task:N` SIGKILLs this process once N tasks are merged."""
    if os.environ.get("PILE_FAULT") == f"tokenize-task:{merged}":
        import signal

        log.warning("PILE_FAULT: killing tokenize after %d merged task(s)", merged)
        logging.shutdown()
        os.kill(os.getpid(), signal.SIGKILL)
