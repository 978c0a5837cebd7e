"""Engines schedule a stage's tasks; they never change what a task computes.

Stages receive an `Executor` (pipeline.engine.base) and call its ordered `map`/`imap`; they never
import a concrete engine. `make_executor` is what the CLI and `pile build` call to get one:
`local` (this machine's process pool, the default) or `ray` (a Ray cluster, optional extra).
"""

from __future__ import annotations

from pathlib import Path

from pipeline.engine.base import Executor, InlineExecutor, LazyExecutor

ENGINES = ("local", "ray")

__all__ = ["ENGINES", "Executor", "InlineExecutor", "LazyExecutor", "make_executor"]


def make_executor(
    engine: str = "local",
    workers: int | None = None,
    scratch: str | Path | None = None,
    ray_address: str | None = None,
) -> Executor:
    """An executor by engine name; unknown names and a missing optional engine are ConfigErrors."""
    from pipeline.errors import ConfigError

    if engine == "local":
        from pipeline.engine.local import LocalExecutor

        return LocalExecutor(workers, scratch)
    if engine == "ray":
        try:
            from pipeline.engine.ray import RayExecutor
        except ImportError as e:
            raise ConfigError(
                f"--engine ray needs the optional Ray extra ({e}); install it with "
                "pip install -e '.[ray]' (or pip install 'ray[default]'), or use --engine local."
            ) from None
        return RayExecutor(workers, scratch, address=ray_address)
    raise ConfigError(f"--engine {engine!r} is not one of {', '.join(ENGINES)}; pick one of them.")
