"""The executor seam: what a stage may ask of an engine.

A stage receives an `Executor` and never imports a concrete engine. Everything a stage needs is an
ordered map over picklable tasks plus two facts (how many workers, where scratch files may go);
engines differ only in where a task runs. Results always come back in task order, so a stage that
merges them in that order writes the same bytes on 1 worker, N workers or a Ray cluster.

Tasks must be module-level functions of one picklable argument, and must be safe to run twice: an
engine may retry a task whose worker died, so a task commits its own outputs atomically (tmp +
rename) or returns them to the driver, never appends to a shared file.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class Executor(ABC):
    """Runs a stage's tasks. Subclasses implement `submit`; ordering is done here, once."""

    #: "local", "ray", ...: recorded in logs, never in artifacts (outputs do not depend on it)
    name: str = "executor"

    def __init__(self, workers: int = 1, scratch: str | Path | None = None) -> None:
        self.workers = max(1, int(workers))
        self.scratch = Path(scratch) if scratch is not None else None

    @abstractmethod
    def submit(self, fn: Callable[[T], R], task: T) -> Future:
        """Start fn(task); the returned future's result() is its value or raises its error."""

    def imap(
        self, fn: Callable[[T], R], tasks: Iterable[T], ahead: int | None = None
    ) -> Iterator[R]:
        """Yield fn(task) in task order. Tasks are drawn lazily, at most `ahead` (default 2 x
        workers) in flight, so a stage can stream a corpus through the pool at bounded memory."""
        ahead = max(1, ahead if ahead is not None else 2 * self.workers)
        pending: deque[Future] = deque()
        try:
            for t in tasks:
                pending.append(self.submit(fn, t))
                while len(pending) > ahead:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for f in pending:
                f.cancel()

    def map(self, fn: Callable[[T], R], tasks: Iterable[T]) -> list[R]:
        """fn over every task, results in task order."""
        tasks = list(tasks)
        if len(tasks) <= 1:  # nothing to overlap: run here, as a 1-worker engine would
            return [fn(t) for t in tasks]
        return list(self.imap(fn, tasks, ahead=len(tasks)))

    def close(self) -> None:
        """Release workers; the executor can still be used (workers restart on demand)."""
        return None

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def describe(self) -> str:
        return f"{self.name} engine, {self.workers} worker{'s' if self.workers != 1 else ''}"


class InlineExecutor(Executor):
    """Runs every task in the calling process, in order: 1 worker, no pool, no pickling."""

    name = "inline"

    def __init__(self, scratch: str | Path | None = None) -> None:
        super().__init__(1, scratch)

    def submit(self, fn: Callable[[T], R], task: T) -> Future:
        fut: Future = Future()
        try:
            fut.set_result(fn(task))
        except BaseException as e:  # noqa: BLE001 - delivered by result(), as a pool would
            fut.set_exception(e)
        return fut

    def imap(
        self, fn: Callable[[T], R], tasks: Iterable[T], ahead: int | None = None
    ) -> Iterator[R]:
        for t in tasks:  # lazily: an error surfaces at its task, as with a pool
            yield fn(t)


class LazyExecutor(Executor):
    """An executor made on first use: a build with nothing to run never starts a pool or joins
    a Ray cluster. `factory()` returns the real executor; everything is delegated to it."""

    def __init__(self, factory: Callable[[], Executor], scratch: str | Path | None = None) -> None:
        self._factory = factory
        self._real: Executor | None = None
        self.scratch = Path(scratch) if scratch is not None else None

    @property
    def real(self) -> Executor:
        if self._real is None:
            self._real = self._factory()
        return self._real

    @property
    def name(self) -> str:  # type: ignore[override]
        return self.real.name

    @property
    def workers(self) -> int:  # type: ignore[override]
        return self.real.workers

    def submit(self, fn: Callable[[T], R], task: T) -> Future:
        return self.real.submit(fn, task)

    def imap(
        self, fn: Callable[[T], R], tasks: Iterable[T], ahead: int | None = None
    ) -> Iterator[R]:
        return self.real.imap(fn, tasks, ahead)

    def map(self, fn: Callable[[T], R], tasks: Iterable[T]) -> list[R]:
        return self.real.map(fn, tasks)

    def close(self) -> None:
        if self._real is not None:
            self._real.close()
            self._real = None

    def describe(self) -> str:
        return self.real.describe()
