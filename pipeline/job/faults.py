"""Fault injection for tests: `PILE_FAULT=<stage>:<point>` (point = start | end) sends SIGKILL to
the build process at that point; `tokenize:<v>:mid` kills it after the first tokenize task is
merged; `tokenize-task:N` and `dedup-signatures:N` kill inside the stage after N tasks
(pipeline.tokenize.stage, pipeline.dedup.stage: their finished tasks are reused by the rerun)."""

from __future__ import annotations

import logging
import os
import signal

log = logging.getLogger(__name__)


def fault_point(stage: str, point: str) -> None:
    """Test hook: SIGKILL this process when PILE_FAULT names this stage and point."""
    if os.environ.get("PILE_FAULT") == f"{stage}:{point}":
        log.warning("PILE_FAULT: killing the build at %s:%s", stage, point)
        logging.shutdown()
        os.kill(os.getpid(), signal.SIGKILL)
