"""Engines schedule a stage's tasks; they never change what a task computes.

`map_ordered(fn, tasks, workers)` returns results in task order whatever the worker count, so a
stage that merges results in that order produces the same bytes for 1 worker, N workers, or (later)
a Ray cluster.
"""

from pipeline.engine.local import map_ordered

__all__ = ["map_ordered"]
