"""Ending a child process with its parent: Linux's parent-death signal.

A process started by rlvr that must not outlive the rlvr process that started it (a rank of `rlvr train`'s own
launch, the multirun process of a `submitit_local` sweep) asks the kernel to send it a signal when its parent dies,
also when the parent is killed with SIGKILL and can pass nothing on: `prctl(PR_SET_PDEATHSIG, sig)`
(https://man7.org/linux/man-pages/man2/prctl.2.html).
"""

from __future__ import annotations

import ctypes
import os
import signal

#: `prctl` option: the signal the kernel sends this process when its parent dies (<linux/prctl.h>).
PR_SET_PDEATHSIG = 1


def on_parent_death(sig: int = signal.SIGTERM, parent: int | None = None) -> bool:
    """Ask for `sig` when this process's parent dies. When the parent is already gone (this process's parent is no
    longer `parent`, a pid), send `sig` to this process at once: the kernel will not.

    Args:
        sig: the signal, e.g. `signal.SIGTERM` (handled: a graceful stop) or `signal.SIGKILL`.
        parent: the pid the parent should have; None: do not check.

    Returns:
        whether the signal is armed (False where `prctl` does not exist: not Linux).
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
            return False
    except (OSError, AttributeError):
        return False
    if parent is not None and os.getppid() != parent:
        os.kill(os.getpid(), sig)
    return True
