"""Fan work out: one function mapped over work items, serially, over processes or over Ray.

Evaluation, baseline tuning and the benchmarks map a picklable, module-level function over
a list of argument tuples. :class:`FanOut` runs that map

- **serially** in this process (``workers=1``, the default),
- over **local processes** (``workers=N``: a fork-based ``ProcessPoolExecutor``), or
- over **Ray tasks** (``ray_address=LOCAL_RAY`` starts a local Ray with ``workers`` CPUs,
  the machine's cores by default; any other address, e.g. ``ray://head:10001`` or
  ``head:6379``, joins a running cluster).

Whatever the mode, :meth:`FanOut.map` returns the function's results in the order of the
items, exactly as the serial loop computes them: the callers' work items carry their own
seeds, so the results, and the JSON written from them, are the same bit for bit.

Ray is optional (``pip install "shift_rl[ray]"``) and imported only when asked for. Workers
must run the same code as the driver: a local Ray started here gets the driver's import path
(``PYTHONPATH``); on a cluster each worker needs shift_rl installed at the same version (and
the tuned baseline parameters in ``agents/``). :meth:`FanOut.__enter__` checks that with one
tiny task per node, comparing a fingerprint of the package's code and tuned parameters, and
fails with the node named when they differ.
"""

from __future__ import annotations

import hashlib
import logging
import os
import platform
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any, TypeVar

from shift_rl.cli import positive_int

logger = logging.getLogger(__name__)

T = TypeVar("T")
LOCAL_RAY = "local"
"""``ray_address`` value that starts a Ray instance on this machine for the command."""
INSTALL_HINT = 'pip install "shift_rl[ray]"'
PACKAGE_DIR = Path(__file__).resolve().parent


class DistributedError(RuntimeError):
    """Ray is missing, cannot be reached, or its workers run other code than the driver."""


def import_ray() -> Any:
    """Ray, or a :class:`DistributedError` saying how to install it."""
    try:
        import ray
    except ImportError:
        raise DistributedError(
            f"Ray is not installed: {INSTALL_HINT} (or pip install 'ray[tune]>=2.41,<3')"
        ) from None
    return ray


def code_fingerprint() -> str:
    """SHA-256 over shift_rl's source files and the tuned baseline parameters it loads.

    Two processes with the same fingerprint compute the same results from the same inputs.
    """
    from shift_rl.agents import TUNED_DIR

    digest = hashlib.sha256()
    files = sorted(PACKAGE_DIR.rglob("*.py")) + sorted(Path(TUNED_DIR).glob("*/params.json"))
    for path in files:
        base = PACKAGE_DIR if path.is_relative_to(PACKAGE_DIR) else Path(TUNED_DIR)
        digest.update(f"{base.name}/{path.relative_to(base).as_posix()}\0".encode())
        digest.update(path.read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()


COMPARED = ("fingerprint", "python", "numpy", "numba")
"""What must be equal on every node for the results to be the same."""


def worker_identity() -> dict[str, str]:
    """What a process runs: code fingerprint, where shift_rl lies, Python, numpy, numba, host."""
    import numba
    import numpy

    import shift_rl

    return {
        "fingerprint": code_fingerprint(),
        "version": shift_rl.__version__,
        "package": str(PACKAGE_DIR),
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "numba": numba.__version__,
        "host": platform.node(),
    }


def noop(x: int) -> int:
    """A task that does nothing: measures the fan-out's own cost per task."""
    return x


def local_ray_env() -> dict[str, Any]:
    """The runtime env of a local Ray started here: workers import this checkout's code."""
    root = str(PACKAGE_DIR.parent)
    path = os.environ.get("PYTHONPATH", "")
    entries = [root, *(p for p in path.split(os.pathsep) if p and p != root)]
    return {"env_vars": {"PYTHONPATH": os.pathsep.join(entries)}}


class FanOut:
    """Map a function over work items serially, over local processes or over Ray tasks.

    Use it as a context manager: entering starts the process pool or Ray (unless Ray is
    already initialized in this process, e.g. by a test fixture or by the caller, in which
    case that instance is used and left running); leaving stops what was started.

    Args:
        workers: processes (without Ray), or CPUs of the local Ray this starts
            (``None``: all cores). Ignored on a cluster, whose CPUs Ray schedules.
        ray_address: ``None`` for no Ray, :data:`LOCAL_RAY` for a local Ray started here,
            otherwise the address of a running cluster (``auto``, ``head:6379``,
            ``ray://head:10001``).
        cpus_per_task: CPUs Ray reserves for each task.
        check_workers: on Ray, verify that every node runs the driver's code (one tiny task
            per node) before any work.
    """

    def __init__(
        self,
        workers: int | None = 1,
        ray_address: str | None = None,
        cpus_per_task: float = 1.0,
        check_workers: bool = True,
    ) -> None:
        if workers is not None and workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.workers = workers
        self.ray_address = ray_address
        self.cpus_per_task = cpus_per_task
        self.check_workers = check_workers
        self._pool: ProcessPoolExecutor | None = None
        self._ray: Any = None
        self._started_ray = False
        self._remote: dict[Callable[..., Any], Any] = {}

    @property
    def mode(self) -> str:
        """``serial``, ``processes`` or ``ray``."""
        if self.ray_address is not None:
            return "ray"
        return "processes" if (self.workers or 1) > 1 else "serial"

    # -- lifecycle ---------------------------------------------------------------------------
    def __enter__(self) -> FanOut:
        if self.mode == "processes":
            self._pool = ProcessPoolExecutor(self.workers, mp_context=get_context("fork"))
        elif self.mode == "ray":
            self._ray, self._started_ray = start_ray(self.ray_address, self.workers)
            if self.check_workers:
                try:
                    check_nodes(self._ray)
                except BaseException:
                    self.__exit__()
                    raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None
        if self._ray is not None and self._started_ray:
            self._ray.shutdown()
        self._ray = None
        self._remote.clear()

    @property
    def width(self) -> int:
        """How many tasks run at once: the number of chunks worth splitting work into."""
        if self.mode == "serial":
            return 1
        if self.mode == "processes":
            return int(self.workers or 1)
        if self._ray is None:
            raise RuntimeError("FanOut.width on Ray needs the context entered (with FanOut(...))")
        cpus = float(self._ray.cluster_resources().get("CPU", 1.0))
        return max(1, int(cpus // self.cpus_per_task))

    # -- the map -----------------------------------------------------------------------------
    def map(self, fn: Callable[..., T], *iterables: Iterable[Any]) -> list[T]:
        """``[fn(*args) for args in zip(*iterables)]``, in order, however it runs.

        ``fn`` must be a module-level function of an importable module (not ``__main__``)
        for processes and Ray. An exception raised by ``fn`` is raised here as it is.
        """
        items = list(zip(*iterables, strict=True))
        if self.mode == "serial":
            return [fn(*args) for args in items]
        if self.mode == "processes":
            if self._pool is None:
                raise RuntimeError("FanOut.map with processes needs the context entered")
            return list(self._pool.map(fn, *zip(*items, strict=True))) if items else []
        if self._ray is None:
            raise RuntimeError("FanOut.map on Ray needs the context entered")
        ray = self._ray
        remote = self._remote.get(fn)
        if remote is None:
            remote = ray.remote(num_cpus=self.cpus_per_task, max_retries=0)(fn)
            self._remote[fn] = remote
        refs = [remote.remote(*args) for args in items]
        try:
            return list(ray.get(refs))
        except ray.exceptions.RayTaskError as err:
            cause = getattr(err, "cause", None)
            if isinstance(cause, BaseException):
                raise cause from None
            raise


def fan_out(
    fn: Callable[..., T],
    items: Sequence[tuple[Any, ...]],
    workers: int | None = 1,
    ray_address: str | None = None,
) -> list[T]:
    """One-shot :meth:`FanOut.map` over argument tuples: ``[fn(*item) for item in items]``."""
    with FanOut(workers, ray_address) as pool:
        return pool.map(fn, *zip(*items, strict=True)) if items else []


# -- Ray sessions ----------------------------------------------------------------------------
def start_ray(address: str | None, workers: int | None = None) -> tuple[Any, bool]:
    """Connect to Ray: reuse this process's instance, start a local one, or join a cluster.

    Returns the ``ray`` module and whether this call started (connected) it, so the caller
    knows whether to shut it down. A local Ray started here has ``workers`` CPUs (all cores
    by default), no dashboard, a small object store and this checkout on its workers'
    import path.
    """
    ray = import_ray()
    if ray.is_initialized():
        return ray, False
    kwargs: dict[str, Any] = {"logging_level": logging.WARNING, "include_dashboard": False}
    try:
        if address in (None, LOCAL_RAY):
            ray.init(
                num_cpus=int(workers or os.cpu_count() or 1),
                object_store_memory=256 * 1024**2,
                runtime_env=local_ray_env(),
                **kwargs,
            )
        else:
            del kwargs["include_dashboard"]  # the cluster's own setting
            ray.init(address=address, **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as err:
        raise DistributedError(
            f"cannot start or reach Ray at {address!r}: {err}. For a cluster, start its head "
            "with `ray start --head` and pass the address it prints (e.g. --ray-address "
            "HEAD_IP:6379)"
        ) from None
    return ray, True


def _shown(d: dict[str, str]) -> str:
    return (
        f"shift_rl {d.get('version')} from {d.get('package')} (code fingerprint "
        f"{str(d.get('fingerprint'))[:12]}, python {d.get('python')}, numpy {d.get('numpy')}, "
        f"numba {d.get('numba')})"
    )


def check_nodes(ray: Any) -> list[dict[str, str]]:
    """Run :func:`worker_identity` once on every alive node; fail if any differs from ours.

    The probe reserves no CPU, so it runs even on a head node started with ``--num-cpus 0``.
    """
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    mine = worker_identity()
    probe = ray.remote(num_cpus=0, max_retries=0)(worker_identity)
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    refs = [
        probe.options(
            scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)
        ).remote()
        for n in nodes
    ]
    seen = ray.get(refs)
    for node, theirs in zip(nodes, seen, strict=True):
        differ = [k for k in COMPARED if theirs.get(k) != mine[k]]
        if differ:
            raise DistributedError(
                f"Ray node {node.get('NodeManagerAddress', '?')} runs {_shown(theirs)} but "
                f"this driver runs {_shown(mine)}; they differ in {', '.join(differ)}. Install the "
                "same checkout (same commit, same agents/*/params.json) with the same Python, "
                "numpy and numba on every node: git checkout <commit> && pip install -e '.[ray]'"
            )
    logger.info("Ray: %d node(s) run shift_rl %s", len(nodes), mine["fingerprint"][:12])
    return seen


def add_cli_flags(parser: Any, workers_help: str = "parallel processes (default 1)") -> None:
    """``--workers N``, ``--ray`` and ``--ray-address ADDR`` on an argparse parser.

    Read them back with :func:`cli_workers` and :func:`cli_ray_address`.
    """
    parser.add_argument("--workers", type=positive_int, default=None, help=workers_help)
    parser.add_argument(
        "--ray",
        action="store_true",
        help=f"fan out over a local Ray started for this command ({INSTALL_HINT}); "
        "--workers then sets its CPUs (default: all cores)",
    )
    parser.add_argument(
        "--ray-address",
        metavar="ADDR",
        help="fan out over a running Ray cluster (e.g. HEAD_IP:6379 from `ray start --head`)",
    )


def cli_ray_address(args: Any) -> str | None:
    """The ``ray_address`` the CLI flags ask for (``--ray-address`` wins over ``--ray``)."""
    if getattr(args, "ray_address", None):
        return str(args.ray_address)
    return LOCAL_RAY if getattr(args, "ray", False) else None


def cli_workers(args: Any) -> int | None:
    """``--workers``, or when it is not given: 1 without Ray, ``None`` (all cores) with it."""
    if args.workers is not None:
        return int(args.workers)
    return None if cli_ray_address(args) is not None else 1


__all__ = [
    "INSTALL_HINT",
    "LOCAL_RAY",
    "DistributedError",
    "FanOut",
    "add_cli_flags",
    "check_nodes",
    "cli_ray_address",
    "cli_workers",
    "code_fingerprint",
    "fan_out",
    "import_ray",
    "local_ray_env",
    "noop",
    "start_ray",
    "worker_identity",
]
