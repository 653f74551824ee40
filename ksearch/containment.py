"""Keeping an untrusted worker process in bounds: its group, its memory, its output, its orphans.

Linux only where it matters (/proc, prctl, prlimit); elsewhere the limits are skipped and the
process-group kill still works. Memory is capped by resident memory measured from /proc, not
by an address-space limit, since CUDA reserves huge virtual ranges.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import resource
import signal
import subprocess
from pathlib import Path

log = logging.getLogger(__name__)

PR_SET_CHILD_SUBREAPER = 36
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def become_subreaper() -> bool:
    """Adopt orphaned descendants, so that a process a candidate detached (setsid, double
    fork) becomes this process's child when its parent dies and can be killed. Returns
    whether the kernel agreed."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def limit_output(pid: int, max_bytes: int) -> None:
    """Cap the size of any file the process writes (its log included); past it, SIGXFSZ."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        resource.prlimit(pid, resource.RLIMIT_FSIZE, (max_bytes, max_bytes))


def _stat(pid: str) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name may hold spaces and parentheses: fields start after the last ")"
    return text.rsplit(")", 1)[1].split()


def group_rss(pgid: int) -> int:
    """Resident bytes of every process in process group `pgid` (0 where /proc is missing)."""
    total = 0
    for entry in os.scandir("/proc") if os.path.isdir("/proc") else ():
        if entry.name.isdigit():
            fields = _stat(entry.name)
            # fields[0] is the state, [2] the process group, [21] the resident pages
            if fields and int(fields[2]) == pgid:
                total += int(fields[21]) * _PAGE
    return total


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    """Kill a worker and every process still in its group, and reap the worker."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def kill_descendants(pid: int) -> int:
    """Kill every descendant of `pid` (in its group or not), leaving `pid` itself running.

    Returns how many were killed.
    """
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc") if os.path.isdir("/proc") else ():
        if entry.name.isdigit():
            fields = _stat(entry.name)
            if fields:
                children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = [], list(children.get(pid, ()))
    while todo:
        child = todo.pop()
        found.append(child)
        todo.extend(children.get(child, ()))
    for child in found:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(child, signal.SIGKILL)
    if found:
        log.warning("killed %d process(es) a candidate left running", len(found))
    return len(found)


def reap_orphans(keep: set[int]) -> int:
    """Kill and reap children of this process that are not in `keep` (adopted orphans).

    Returns how many were found.
    """
    me = os.getpid()
    found = 0
    for entry in os.scandir("/proc") if os.path.isdir("/proc") else ():
        if not entry.name.isdigit() or int(entry.name) in keep:
            continue
        fields = _stat(entry.name)
        if fields and int(fields[1]) == me:
            pid = int(entry.name)
            found += 1
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
    if found:
        log.warning("killed %d process(es) a candidate had detached", found)
    return found


def describe_exit(returncode: int | None) -> str:
    """A worker's exit in words: a code, or the signal that ended it."""
    if returncode is None or returncode >= 0:
        return f"exited with code {returncode}"
    try:
        name = signal.Signals(-returncode).name
    except ValueError:
        name = f"signal {-returncode}"
    if -returncode == signal.SIGXFSZ:
        return f"was killed by {name}: it wrote more output than allowed"
    return f"was killed by {name}"
