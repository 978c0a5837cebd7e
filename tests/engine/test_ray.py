"""Ray engine on a real local Ray cluster (2 CPUs, loopback only, no dashboard, one per module):
ordered results, typed errors not retried, bounded lazy imap, a SIGKILLed worker's task retried,
and `pile build --engine ray` byte-identical to the local engine's golden hashes."""

from __future__ import annotations

import importlib.util
import itertools
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

import pytest

from pipeline.cli.main import main
from pipeline.engine import make_executor
from pipeline.errors import ConfigError, InputError
from tests.procs import wait_for

ray = pytest.importorskip("ray", reason="the Ray engine is optional: pip install -e '.[ray]'")

from pipeline.engine import ray as ray_engine  # noqa: E402 - needs ray
from pipeline.engine.ray import RayExecutor  # noqa: E402

TOOLS = Path(__file__).resolve().parents[2] / "tools"

# Ray workers import a task's module by name; this test module is not importable from a worker's
# sys.path, so its task functions travel by value
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


@pytest.fixture(scope="module")
def cluster():
    """One local Ray for the module (starting one takes ~10 s on 2 busy cores)."""
    if ray.is_initialized():
        ray.shutdown()
    mp = pytest.MonkeyPatch()
    # nothing leaves the machine: no usage report, every Ray service on 127.0.0.1
    mp.setenv("RAY_USAGE_STATS_ENABLED", "0")
    mp.setenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    with ray_engine._single_machine():  # as RayExecutor starts its private Ray
        ray.init(
            address="local",
            num_cpus=2,
            include_dashboard=False,
            _node_ip_address="127.0.0.1",
            logging_level="WARNING",
        )
    assert {n["NodeManagerAddress"] for n in ray.nodes()} == {"127.0.0.1"}
    try:
        yield ray
    finally:
        ray.shutdown()
        mp.undo()


def _pid(_: object) -> int:
    return os.getpid()


def _slow_first(i: int) -> int:
    time.sleep(0.05 * max(0, 4 - i))  # early tasks finish last
    return i * i


def _fail_once_counted(arg: tuple[int, str]) -> int:
    i, marks = arg
    if i == 1:
        with open(Path(marks, "attempts"), "a") as f:
            f.write(f"{os.getpid()}\n")
        raise InputError(f"bad record in task {i}: name the file and line")
    return i


def _stubborn(arg: tuple[int, str]) -> int:
    """Task 3 waits to be killed on its first attempt; its retry completes."""
    i, marks = arg
    if i == 3:
        attempts = Path(marks, "attempts")
        with open(attempts, "a") as f:
            f.write(f"{os.getpid()}\n")
        if len(attempts.read_text().split()) == 1:
            Path(marks, "running.tmp").write_text(str(os.getpid()))
            os.replace(Path(marks, "running.tmp"), Path(marks, "running"))
            time.sleep(120)
    return i * 10


def test_ordered_map_and_parallelism(cluster):
    with RayExecutor(None) as ex:
        assert ex.name == "ray" and ex.workers == 2 == ex.cluster_cpus  # no --workers: all CPUs
        assert ex.map(_slow_first, range(6)) == [0, 1, 4, 9, 16, 25]
        assert ex.map(abs, []) == []
        assert ex.map(_pid, [None]) != [os.getpid()]  # one task runs on a worker too
        assert "ray engine" in ex.describe()
    assert ray.is_initialized()  # close() leaves a Ray it did not start running
    assert RayExecutor(1).workers == 1


def test_imap_is_lazy_and_bounded(cluster):
    drawn: list[int] = []

    def tasks():
        for t in itertools.count():
            drawn.append(t)
            yield -t

    ex = RayExecutor(2)
    it = ex.imap(abs, tasks(), ahead=3)
    assert [next(it) for _ in range(5)] == [0, 1, 2, 3, 4]
    assert len(drawn) <= 5 + 3  # never more than `ahead` tasks beyond what was consumed
    it.close()


def test_task_error_keeps_its_type_and_is_not_retried(cluster, tmp_path):
    with RayExecutor(2) as ex, pytest.raises(InputError) as err:
        ex.map(_fail_once_counted, [(i, str(tmp_path)) for i in range(4)])
    assert type(err.value) is InputError  # the original class, not Ray's wrapper
    assert str(err.value) == "bad record in task 1: name the file and line"
    assert err.value.exit_code == InputError.exit_code
    assert len((tmp_path / "attempts").read_text().split()) == 1  # app errors are not retried
    with RayExecutor(2) as ex, pytest.raises(ZeroDivisionError):
        ex.map(_divide, [1, 0, 2])


def _divide(x: int) -> float:
    return 1 / x


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc to see the worker")
def test_worker_killed_mid_task_is_retried(cluster, tmp_path):
    marks = str(tmp_path)
    killed: list[int] = []

    def killer():
        wait_for(lambda: (tmp_path / "running").exists(), "task 3 to start")
        pid = int((tmp_path / "running").read_text())
        os.kill(pid, signal.SIGKILL)
        killed.append(pid)

    t = threading.Thread(target=killer, daemon=True)
    t.start()
    with RayExecutor(2) as ex:
        result = ex.map(_stubborn, [(i, marks) for i in range(6)])
    t.join(timeout=5)
    assert result == [0, 10, 20, 30, 40, 50]  # complete, in order, nothing twice
    attempts = [int(p) for p in (tmp_path / "attempts").read_text().split()]
    assert len(attempts) == 2 and attempts[0] == killed[0] != attempts[1]


def test_workers_with_other_code_are_refused(cluster, monkeypatch):
    # the driver's digest differs from what the worker computes from its own installed code
    monkeypatch.setattr(ray_engine, "code_digest", lambda: "edited elsewhere")
    ex = RayExecutor(2)
    for _ in range(2):  # refused again, not only the first time
        with pytest.raises(ConfigError, match="code differs from the driver"):
            ex.submit(abs, -1)


def _golden():
    spec = importlib.util.spec_from_file_location("_tool_golden_hashes", TOOLS / "golden_hashes.py")
    gh = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gh)
    golden = json.loads(gh.GOLDEN.read_text())
    only_build = {
        "versions": golden["versions"],
        "files": {k: v for k, v in golden["files"].items() if k.startswith("build/")},
        "parquet_content": {
            k: v for k, v in golden["parquet_content"].items() if k.startswith("build/")
        },
    }
    return gh, only_build


def test_build_on_ray_equals_the_local_build(cluster, tmp_path, caplog):
    gh, golden = _golden()  # the hashes tools/golden_hashes.py recorded with the local engine
    before = ray_engine.tasks_submitted()
    out = tmp_path / "build"
    args = ["build", "--out", str(out), "--workers", "2", "--engine", "ray", "-q"]
    with caplog.at_level("INFO", logger="pipeline"):
        assert main(args) == 0
    diffs, notes = gh.check(tmp_path, golden)
    assert not diffs, "\n".join(diffs + notes)
    assert 'engine = "ray"' in (out / "build.toml").read_text()
    assert "engine: ray" in (out / "logs" / "build.log").read_text()
    assert ray_engine.tasks_submitted() > before, "no task of the build ran on Ray"


def test_missing_ray_is_a_config_error_naming_the_extra(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "pipeline.engine.ray", None)  # import fails: no Ray
    with pytest.raises(ConfigError, match=r"pip install -e '\.\[ray\]'"):
        make_executor("ray", 2)
    out = tmp_path / "out"
    assert main(["-q", "build", "--out", str(out), "--engine", "ray", "--variant", "standard"]) == 2
    assert "pip install -e '.[ray]'" in capsys.readouterr().err
    assert not (out / "standard").exists()  # refused before any stage ran


def test_ray_address_is_checked_before_ray_init():
    import socket

    # nothing listens: refused at once (ray.init would retry it for minutes)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free = s.getsockname()[1]
    with pytest.raises(
        ConfigError, match=f"no Ray cluster answers at --ray-address 127.0.0.1:{free}"
    ):
        ray_engine._check_reachable(f"127.0.0.1:{free}")
    for bad in ("not an address", "host:", ":6379", "host:port"):
        with pytest.raises(ConfigError, match="is not auto or HOST:PORT"):
            ray_engine._check_reachable(bad)
    with socket.socket() as s:  # something listens: left to ray.init
        s.bind(("127.0.0.1", 0))
        s.listen()
        ray_engine._check_reachable(f"127.0.0.1:{s.getsockname()[1]}")
    ray_engine._check_reachable("auto")
