"""Every pipeline error survives pickling (it crosses process boundaries: pool workers, Ray tasks),
and a worker's input error reaches the user as exit 3 naming the file, not a BrokenProcessPool."""

from __future__ import annotations

import importlib
import inspect
import json
import pickle
import pkgutil

import pytest
import zstandard

import pipeline
from pipeline.cli.main import main
from pipeline.errors import PipelineError


def pipeline_errors() -> list[type]:
    """PipelineError and every subclass defined anywhere in the package."""
    for mod in pkgutil.walk_packages(pipeline.__path__, "pipeline."):
        importlib.import_module(mod.name)
    found, todo = [], [PipelineError]
    while todo:
        cls = todo.pop()
        if cls.__module__.startswith("pipeline"):
            found.append(cls)
        todo.extend(cls.__subclasses__())
    return sorted(set(found), key=lambda c: (c.__module__, c.__qualname__))


def make(cls: type) -> PipelineError:
    """An instance built through the class's own __init__, with a distinct string for each
    required parameter."""
    params = [
        p
        for p in list(inspect.signature(cls.__init__).parameters.values())[1:]
        if p.default is inspect.Parameter.empty
        and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)
    ]
    args = [f"{p.name} value {i}" for i, p in enumerate(params)] or ["a message"]
    return cls(*args)


def test_the_walk_finds_the_known_errors():
    names = {c.__name__ for c in pipeline_errors()}
    assert {"PipelineError", "ConfigError", "InputError", "IntegrityError", "StreamError"} <= names


@pytest.mark.parametrize("cls", pipeline_errors(), ids=lambda c: f"{c.__module__}.{c.__name__}")
def test_error_round_trips_through_pickle(cls):
    e = make(cls)
    e.extra_attribute = {"file": "x.jsonl.zst", "line": 7}
    back = pickle.loads(pickle.dumps(e))
    assert type(back) is cls
    assert str(back) == str(e) and back.args == e.args
    assert back.__dict__ == e.__dict__
    assert back.exit_code == e.exit_code


def test_stream_error_keeps_its_fields():
    from pipeline.read.lines import StreamError

    e = StreamError("d", "f", fatal=True)
    e.partial, e.line, e.offset = b"cut", 3, 99
    back = pickle.loads(pickle.dumps(e))
    assert (back.detail, back.fix, back.fatal, back.partial, back.line, back.offset) == (
        "d",
        "f",
        True,
        b"cut",
        3,
        99,
    )
    assert str(back) == "d. f"


@pytest.fixture
def truncated_inputs(tmp_path):
    cctx = zstandard.ZstdCompressor()
    d = tmp_path / "in"
    d.mkdir()
    for i in range(3):
        data = b"".join(
            json.dumps({"text": f"doc {i} {j} " * 50, "meta": {"pile_set_name": "A"}}).encode()
            + b"\n"
            for j in range(200)
        )
        (d / f"{i:02d}.jsonl.zst").write_bytes(cctx.compress(data))
    bad = d / "01.jsonl.zst"
    bad.write_bytes(bad.read_bytes()[:-40])
    return d, bad


@pytest.mark.parametrize("command", ["stats", "tokenize"])
def test_truncated_input_with_two_workers_exits_3_naming_the_file(
    command, truncated_inputs, tmp_path, capsys
):
    d, bad = truncated_inputs
    argv = [command, str(d), "--workers", "2"]
    if command == "tokenize":
        argv += ["--out", str(tmp_path / "out"), "--prefix", "p"]
    assert main(argv) == 3
    err = capsys.readouterr().err
    assert f"{bad}: truncated zstd stream" in err
    assert "Traceback" not in err and "BrokenProcessPool" not in err
