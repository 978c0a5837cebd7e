"""The executor seam: ordered results whatever the engine or worker count, lazy bounded
lookahead, errors delivered at their task, and engines chosen by name."""

from __future__ import annotations

import itertools

import pytest

from pipeline.engine import InlineExecutor, make_executor
from pipeline.engine.local import LocalExecutor
from pipeline.errors import ConfigError

TASKS = [-5, 3, -1, 8, -2, 0, 7]


@pytest.mark.parametrize("workers", [1, 2])
def test_map_and_imap_are_ordered(workers):
    with LocalExecutor(workers) as ex:
        assert ex.map(abs, TASKS) == [5, 3, 1, 8, 2, 0, 7]
        assert list(ex.imap(abs, iter(TASKS), ahead=2)) == [5, 3, 1, 8, 2, 0, 7]
        assert ex.map(abs, []) == [] and ex.map(abs, [-4]) == [4]


def test_imap_draws_tasks_lazily():
    drawn = []

    def tasks():
        for t in itertools.count():
            drawn.append(t)
            yield t

    ex = InlineExecutor()
    it = ex.imap(abs, tasks())
    assert [next(it) for _ in range(3)] == [0, 1, 2]
    assert drawn == [0, 1, 2]  # an infinite stream is fine: nothing ahead of what was asked


def test_error_surfaces_at_its_task():
    ex = InlineExecutor()
    it = ex.imap(lambda x: 1 // x, [1, 0, 2])
    assert next(it) == 1
    with pytest.raises(ZeroDivisionError):
        next(it)


def test_pool_error_is_raised_in_the_caller():
    with LocalExecutor(2) as ex, pytest.raises(TypeError):
        ex.map(abs, [1, "x", 3])


def test_make_executor_by_name(tmp_path):
    ex = make_executor("local", workers=3, scratch=tmp_path)
    assert ex.name == "local" and ex.workers == 3 and ex.scratch == tmp_path
    assert "3 workers" in ex.describe()
    with pytest.raises(ConfigError, match="'spark' is not one of local, ray"):
        make_executor("spark")
