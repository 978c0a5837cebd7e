"""Ray engine: a stage's tasks run as Ray tasks on a local or multi-node Ray cluster.

Only *where* a task runs changes. Results are consumed in task order by `Executor.imap`, so a
stage writes the same bytes as with the local engine, whatever the cluster's size.

- `address=None` starts a private local Ray (num_cpus = `workers`, no dashboard) and shuts it down
  on `close()`; `"auto"` or `"HOST:PORT"` joins a running cluster (`ray start --head`), which is
  left running. A Ray already initialised in this process (a test, a notebook) is used as it is.
- A task whose worker process or node dies is retried (`max_retries`, Ray's system-failure
  retries). An exception raised by the task itself is not retried (it would fail the same way) and
  is delivered as the original typed error (a `PipelineError` keeps its class, message and exit
  code), not as Ray's wrapper.
- Workers must import the same `pipeline` code as the driver: on one machine they do (same
  interpreter, same install); on a multi-node cluster install the package on every node or submit
  with a runtime_env `working_dir` (README "Running on a Ray cluster"). The first use probes a
  worker and refuses to run when its code differs, since a different version could write
  different bytes.

Tasks must be module-level functions (Ray pickles them by reference) that commit their outputs
atomically: a retried task may run twice (pipeline.engine.base).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import socket
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, InvalidStateError
from pathlib import Path
from typing import Any, TypeVar

import ray
from ray.exceptions import RayTaskError

from pipeline.engine.base import Executor
from pipeline.errors import ConfigError

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

MAX_RETRIES = 3  # re-runs of a task whose worker died (SIGKILL, OOM killer, lost node)

# Tasks submitted by RayExecutors of this process (the tests use it to show work ran on Ray).
_submitted = 0
_submitted_lock = threading.Lock()


def tasks_submitted() -> int:
    """How many tasks RayExecutors of this process have sent to Ray so far."""
    return _submitted


def _call(fn: Callable[[T], R], task: T) -> R:
    """The one remote function: runs fn(task) on a worker."""
    return fn(task)


def code_digest() -> str:
    """sha256 over the `pipeline` package's Python sources (relative path + bytes), so a worker
    running another version or a locally edited copy is told apart from the driver's."""
    root = Path(__file__).resolve().parents[1]
    h = hashlib.sha256()
    for p in sorted(root.rglob("*.py")):
        h.update(p.relative_to(root).as_posix().encode() + b"\0")
        h.update(p.read_bytes())
        h.update(b"\0")
    return h.hexdigest()


def _probe(_: Any = None) -> dict[str, Any]:
    import sys

    import pipeline

    return {
        "digest": code_digest(),
        "version": pipeline.__version__,
        "python": list(sys.version_info[:2]),
        "path": str(Path(pipeline.__file__).resolve().parent),
        "node": ray.util.get_node_ip_address(),
    }


class _RayFuture(Future):
    """A concurrent.futures.Future for one Ray task; cancel() also cancels the Ray task."""

    def __init__(self, ref: ray.ObjectRef) -> None:
        super().__init__()
        self.ref = ref

    def cancel(self) -> bool:
        if self.done():
            return False
        try:
            ray.cancel(self.ref)  # not force: a running task finishes, its result is dropped
        except Exception:  # noqa: BLE001 - the task may have finished meanwhile
            pass
        return super().cancel()


def _unwrap(err: BaseException) -> BaseException:
    """The task's own exception (its class, message and attributes) out of Ray's wrapper."""
    if isinstance(err, RayTaskError):
        cause = getattr(err, "cause", None)
        if isinstance(cause, BaseException) and not isinstance(cause, RayTaskError):
            return cause
    return err


def _transfer(src: Future, dst: Future) -> None:
    if dst.cancelled():
        return
    try:
        try:
            dst.set_result(src.result())
        except BaseException as e:  # noqa: BLE001 - delivered by dst.result()
            dst.set_exception(_unwrap(e))
    except InvalidStateError:  # cancelled meanwhile
        pass


@contextlib.contextmanager
def _single_machine() -> Iterator[None]:
    """Ray's single-machine mode while a private Ray starts: its node address is 127.0.0.1, so
    every service listens on loopback only. RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 is Ray's switch
    for it; Ray reads it when imported, so the driver's copy is set too (restored afterwards, so
    a later `--ray-address` run in this process joins clusters normally). The workers inherit
    the variable."""
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    consts = getattr(getattr(ray, "_private", None), "ray_constants", None)
    if consts is None or not hasattr(consts, "ENABLE_RAY_CLUSTER"):  # another Ray layout
        yield
        return
    saved = consts.ENABLE_RAY_CLUSTER
    consts.ENABLE_RAY_CLUSTER = os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] not in ("0", "")
    try:
        yield
    finally:
        consts.ENABLE_RAY_CLUSTER = saved


_AUTH_LOGGER = "ray._private.authentication.authentication_token_setup"


def _quiet_auth_notice(record: logging.LogRecord) -> bool:
    return not record.getMessage().startswith("Token authentication is enabled for this")


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """Fail fast on a HOST:PORT nothing listens on (ray.init retries such an address for minutes,
    printing a warning every few seconds). `auto` and ray:// client addresses are Ray's to check."""
    if address == "auto" or "://" in address:
        return
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ConfigError(
            f"--ray-address {address!r} is not auto or HOST:PORT; use auto (the cluster `ray "
            "start` runs on this machine), HOST:6379 (a head node's GCS port) or leave it out "
            "for a local Ray."
        )
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as e:
        raise ConfigError(
            f"no Ray cluster answers at --ray-address {address} ({e.strerror or e}); start one "
            "there with `ray start --head --port PORT`, check the host and port, or leave "
            "--ray-address out to start a local Ray for this run."
        ) from None


class RayExecutor(Executor):
    """Runs each task as a Ray task; see the module docstring."""

    name = "ray"

    def __init__(
        self,
        workers: int | None = None,
        scratch: str | Path | None = None,
        address: str | None = None,
        *,
        max_retries: int = MAX_RETRIES,
        runtime_env: dict[str, Any] | None = None,
    ) -> None:
        self.address = address
        self.max_retries = int(max_retries)
        self._started = False
        self._init_args = (workers, address, runtime_env)
        if not ray.is_initialized():
            self._init(*self._init_args)
        elif address:
            log.info("ray engine: using the Ray already initialised in this process")
        cpus = int(ray.cluster_resources().get("CPU", 0))
        if cpus < 1:
            self.close()
            raise ConfigError(
                f"the Ray cluster at {address or 'local'} has no CPUs for tasks; start it with "
                "`ray start --head --num-cpus N` (N >= 1) or add worker nodes."
            )
        # the parallelism: --workers when given, else every CPU of the cluster
        super().__init__(workers if workers and workers > 0 else cpus, scratch)
        self.cluster_cpus = cpus
        self._remote = ray.remote(_call).options(
            num_cpus=1, max_retries=self.max_retries, retry_exceptions=False
        )
        self._checked = False
        nodes = sum(1 for n in ray.nodes() if n.get("Alive"))
        log.info(
            "engine: ray (%s), %d tasks in flight, cluster of %d CPUs on %d node(s)",
            "a local Ray started for this run" if self._started else address or "joined",
            self.workers,
            cpus,
            nodes,
        )

    def _init(self, workers: int | None, address: str | None, runtime_env: dict | None) -> None:
        kwargs: dict[str, Any] = {
            "logging_level": logging.WARNING,
            "runtime_env": runtime_env,
            "configure_logging": True,
        }
        if address:
            _check_reachable(address)
        try:
            if address:
                ray.init(address=address, **kwargs)
            else:
                # a private cluster on this machine: no usage report leaves it, and its
                # services listen on loopback only (Ray otherwise binds the routable address)
                os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
                # Ray turns on token authentication for a new local cluster (good) and warns
                # about it on every start (noise on the user's terminal): drop that one line
                logging.getLogger(_AUTH_LOGGER).addFilter(_quiet_auth_notice)
                with _single_machine():
                    ray.init(
                        address="local",
                        num_cpus=workers if workers and workers > 0 else os.cpu_count() or 1,
                        include_dashboard=False,
                        _node_ip_address="127.0.0.1",
                        **kwargs,
                    )
                self._started = True
        except ConnectionError as e:
            raise ConfigError(
                f"cannot connect to a Ray cluster at --ray-address {address}: {e}. Start one "
                "with `ray start --head` (then --ray-address auto or HOST:6379), or leave "
                "--ray-address out to start a local Ray for this run."
            ) from None
        except ValueError as e:  # ray.init refuses malformed addresses with ValueError
            raise ConfigError(
                f"--ray-address {address!r}: {e}. Use auto, HOST:PORT (the GCS port of "
                "`ray start --head`, 6379 by default) or leave it out for a local Ray."
            ) from None

    def _check_workers(self) -> None:
        """Refuse a cluster whose workers run other `pipeline` code than the driver (asked again
        on the next submit until a worker passes)."""
        try:
            remote = ray.get(ray.remote(_probe).options(num_cpus=1).remote())
        except ray.exceptions.RayError as e:  # the task's error, or unpickling _probe failed
            raise ConfigError(
                f"a Ray worker cannot import this pipeline package ({_unwrap(e)!r}); install it "
                "on every node (pip install -e '.[ray]') or submit the run with a runtime_env "
                "working_dir (README: Running on a Ray cluster)."
            ) from None
        here = _probe()
        if remote["digest"] != here["digest"]:
            raise ConfigError(
                f"the Ray worker on {remote['node']} runs pipeline {remote['version']} from "
                f"{remote['path']}, whose code differs from the driver's ({here['version']} "
                f"from {here['path']}): it could write different bytes. Install the same "
                "version on every node or submit with a runtime_env working_dir."
            )
        self._checked = True
        if remote["python"] != here["python"]:
            log.warning(
                "ray engine: workers run Python %s, the driver %s",
                ".".join(map(str, remote["python"])),
                ".".join(map(str, here["python"])),
            )

    def submit(self, fn: Callable[[T], R], task: T) -> Future:
        global _submitted
        if not ray.is_initialized():  # closed: start (or join) again, as the local pool does
            self._init(*self._init_args)
            self._checked = False
        if not self._checked:
            self._check_workers()
        ref = self._remote.remote(fn, task)
        with _submitted_lock:
            _submitted += 1
        out = _RayFuture(ref)
        ref.future().add_done_callback(lambda f: _transfer(f, out))
        return out

    def map(self, fn: Callable[[T], R], tasks: Iterable[T]) -> list[R]:
        """fn over every task on the cluster, results in task order (even a single task runs on
        a worker, not in the driver: the driver may be a small head node)."""
        tasks = list(tasks)
        return list(self.imap(fn, tasks, ahead=len(tasks))) if tasks else []

    def close(self) -> None:
        """Shut down a Ray this executor started; a cluster it joined keeps running."""
        if self._started and ray.is_initialized():
            ray.shutdown()
            self._started = False

    def describe(self) -> str:
        return f"ray engine, {self.workers} tasks in flight on {self.cluster_cpus} CPUs"
