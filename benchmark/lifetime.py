"""Child processes that do not outlive their parent.

``die_with_parent()`` is called first thing in a worker process (a pool worker of the process
executor, or any helper process a worker starts). From then on the process exits when its
parent dies, even by ``kill -9`` (which runs no clean-up code in the parent):

* on Linux, ``prctl(PR_SET_PDEATHSIG, SIGKILL)``: the kernel kills the child when the parent
  thread that created it exits;
* everywhere, a daemon thread polls ``os.getppid()`` every ``interval`` seconds and ends the
  process (``SIGKILL`` to itself) once the parent is gone (the child is re-parented, so its
  parent id changes).

Both are needed: the parent-death signal is Linux-only and tied to the creating *thread*; the
watch covers other systems and that case, within one polling interval.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
import threading
import time

PR_SET_PDEATHSIG = 1


def _set_pdeathsig(sig: int) -> bool:
    """Ask the Linux kernel to send ``sig`` to this process when its parent dies."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _exit_now() -> None:
    try:
        os.kill(os.getpid(), signal.SIGKILL)
    finally:  # pragma: no cover - SIGKILL does not return
        os._exit(1)


def die_with_parent(parent_pid: int | None = None, interval: float = 0.5) -> bool:
    """Make this process exit when its parent dies; returns whether PR_SET_PDEATHSIG was set.

    ``parent_pid`` is the pid the parent had when it started this process (default: the current
    ``os.getppid()``). Call it as the first thing in the child: if the parent already died in
    between, the process exits at once.
    """
    parent = os.getppid() if parent_pid is None else int(parent_pid)
    armed = _set_pdeathsig(signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before the signal was armed
        _exit_now()

    def watch() -> None:
        while True:
            time.sleep(interval)
            if os.getppid() != parent:
                _exit_now()

    threading.Thread(target=watch, name="die-with-parent", daemon=True).start()
    return armed
