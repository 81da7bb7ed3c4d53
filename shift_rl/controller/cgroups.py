"""The cgroup hierarchy of :class:`~shift_rl.controller.cgroup.CgroupBackend`: detection, our
groups, their CPU caps and their removal.

- **detection** (:func:`detect_cgroup`, :func:`cgroup_support`): cgroup v2 where the v2
  hierarchy has the cpu controller, else the v1 cpu hierarchy; either must be writable (root,
  or a delegated v2 subtree). Linux only; :func:`cgroup_support` says why a host cannot;
- **our groups** (:class:`CgroupTree`): a parent ``<mount>/shift_rl-<pid>-<id>/`` with a
  raised CPU weight (v2 ``cpu.weight``, v1 ``cpu.shares``: a busy machine cannot starve the
  workers below their caps, so the caps, not the neighbours, are what the policy controls) and
  one leaf per child process. A leaf's CPU is capped to ``cpus`` of one CPU per period: v2
  ``cpu.max``, v1 ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``, never below the kernel's
  minimum quota (:data:`MIN_QUOTA_US`);
- **removal**: :meth:`CgroupTree.remove` removes the leaves and the parent once their
  processes have left (retrying briefly while exiting tasks leave). Groups that a killed
  backend left behind (their ``<pid>`` is gone) are removed by the next tree created on the
  same mount (:func:`remove_stale_groups`), killing any process still inside.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
import sys
import time
from pathlib import Path

logger = logging.getLogger(__name__)

GROUP_PREFIX = "shift_rl-"
_GROUP_RE = re.compile(r"^shift_rl-(\d+)-[0-9a-f]+$")
MIN_QUOTA_US = 1000  # the kernel's smallest quota (v1 and v2)


class CgroupUnavailableError(OSError):
    """This host cannot run the cgroup backend; the message says what is missing."""


def _mounts() -> list[tuple[str, str, list[str]]]:
    """(mount point, fs type, options) of the cgroup file systems."""
    out = []
    with open("/proc/mounts") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 4 and parts[2] in ("cgroup", "cgroup2"):
                out.append((parts[1].replace("\\040", " "), parts[2], parts[3].split(",")))
    return out


def detect_cgroup() -> tuple[str, Path]:
    """``("v2", mount)`` when cgroup v2 has the cpu controller, else ``("v1", cpu mount)``.

    Raises :class:`CgroupUnavailableError` naming what is missing (not Linux, no cpu
    controller in either hierarchy, or no write access).
    """
    if not sys.platform.startswith("linux"):
        raise CgroupUnavailableError(f"cgroups need Linux; this is {sys.platform}")
    try:
        mounts = _mounts()
    except OSError as err:
        raise CgroupUnavailableError(f"cannot read /proc/mounts: {err}") from None
    seen = []
    for point, fstype, _opts in mounts:
        if fstype != "cgroup2":
            continue
        try:
            controllers = (Path(point) / "cgroup.controllers").read_text().split()
        except OSError:
            controllers = []
        seen.append(f"cgroup v2 at {point} has controllers {controllers or '(none)'}")
        if "cpu" in controllers:
            if not os.access(point, os.W_OK):
                raise CgroupUnavailableError(
                    f"cgroup v2 at {point} has the cpu controller but is not writable "
                    "(run as root or delegate a subtree)"
                )
            return "v2", Path(point)
    for point, fstype, opts in mounts:
        if fstype == "cgroup" and "cpu" in opts:
            if not os.access(point, os.W_OK) or not os.access(
                Path(point) / "cgroup.procs", os.W_OK
            ):
                raise CgroupUnavailableError(
                    f"cgroup v1 cpu hierarchy at {point} is not writable (run as root)"
                )
            return "v1", Path(point)
    seen.append("no cgroup v1 hierarchy with the cpu controller is mounted")
    raise CgroupUnavailableError("no writable cgroup with the cpu controller: " + "; ".join(seen))


def cgroup_support() -> str | None:
    """None when this host can run :class:`CgroupBackend`, else the reason it cannot."""
    try:
        detect_cgroup()
    except CgroupUnavailableError as err:
        return str(err)
    return None


class CgroupTree:
    """Our groups: ``<mount>/shift_rl-<pid>-<id>/`` (raised CPU weight) with one leaf each."""

    def __init__(self, version: str, mount: Path, leaves: list[str], weight_factor: float) -> None:
        self.version, self.mount = version, mount
        self.root = mount / f"{GROUP_PREFIX}{os.getpid()}-{os.urandom(4).hex()}"
        remove_stale_groups(mount)
        if version == "v2":
            self._enable_cpu(mount)
        self.root.mkdir()
        self.leaves: dict[str, Path] = {}
        try:
            if version == "v2":
                self._enable_cpu(self.root)
                weight = int(min(10000, max(1, round(100 * weight_factor))))
                (self.root / "cpu.weight").write_text(f"{weight}\n")
            else:
                shares = int(min(262144, max(2, round(1024 * weight_factor))))
                (self.root / "cpu.shares").write_text(f"{shares}\n")
            for name in leaves:
                path = self.root / name
                path.mkdir()
                self.leaves[name] = path
        except OSError:
            self.remove()
            raise

    @staticmethod
    def _enable_cpu(group: Path) -> None:
        control = group / "cgroup.subtree_control"
        if "cpu" not in control.read_text().split():
            control.write_text("+cpu\n")

    def set_cap(self, leaf: str, cpus: float, period_us: int) -> int:
        """Cap a leaf to ``cpus`` CPUs (at least the kernel's minimum quota); returns quota."""
        quota = max(MIN_QUOTA_US, round(cpus * period_us))
        path = self.leaves[leaf]
        if self.version == "v2":
            (path / "cpu.max").write_text(f"{quota} {period_us}\n")
        else:
            period = path / "cpu.cfs_period_us"
            if int(period.read_text()) != period_us:
                period.write_text(f"{period_us}\n")
            (path / "cpu.cfs_quota_us").write_text(f"{quota}\n")
        return quota

    def add(self, leaf: str, pid: int) -> None:
        (self.leaves[leaf] / "cgroup.procs").write_text(f"{pid}\n")

    def cpu_stat(self, leaf: str) -> dict[str, int]:
        """The leaf's ``cpu.stat`` (throttling counters; v2 also usage)."""
        out = {}
        with contextlib.suppress(OSError, ValueError):
            for line in (self.leaves[leaf] / "cpu.stat").read_text().splitlines():
                key, value = line.split()
                out[key] = int(value)
        return out

    def remove(self) -> bool:
        """Remove the leaves and the group (they must hold no process); True when gone."""
        return _remove_group(self.root)


def _group_pids(group: Path) -> list[int]:
    pids = []
    for procs in group.rglob("cgroup.procs"):
        with contextlib.suppress(OSError, ValueError):
            pids += [int(p) for p in procs.read_text().split()]
    return pids


def _remove_group(group: Path, attempts: int = 20) -> bool:
    """rmdir a group and its children, retrying briefly while exiting tasks leave."""
    for attempt in range(attempts):
        try:
            for child in sorted((p for p in group.rglob("*") if p.is_dir()), reverse=True):
                child.rmdir()
            group.rmdir()
            return True
        except FileNotFoundError:
            if not group.exists():
                return True
        except OSError as err:
            if attempt == attempts - 1:
                logger.warning("could not remove cgroup %s: %s", group, err)
                return False
        time.sleep(0.05)
    return False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_groups(mount: Path) -> list[Path]:
    """Remove groups left by backends whose process is gone (killed before ``close``).

    Their children exit on their own when the parent dies (end of stdin); any still inside
    are ours and are killed. Returns the groups removed.
    """
    removed = []
    with contextlib.suppress(OSError):
        for group in mount.iterdir():
            match = _GROUP_RE.match(group.name)
            if not match or _alive(int(match.group(1))) or not group.is_dir():
                continue
            for pid in _group_pids(group):
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
            if _remove_group(group):
                logger.info("removed stale cgroup %s", group)
                removed.append(group)
    return removed
