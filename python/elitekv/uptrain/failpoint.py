"""Failpoints, as in ekv's C++ tools (lib/ekv/core/failpoint.hpp): with EKV_FAILPOINT=NAME or
NAME:N the process kills itself with SIGKILL at the N-th arrival at that place, so the
crash-safety tests kill it for real at a known point. Unset, a failpoint does nothing. Names
start with "uptrain-" so that the C++ tools it runs do not stop at theirs."""
import os
import signal

_seen = {}


def failpoint(name):
    armed = os.environ.get("EKV_FAILPOINT", "")
    if not armed:
        return
    wanted, _, hit = armed.partition(":")
    if wanted != name:
        return
    _seen[name] = _seen.get(name, 0) + 1
    if _seen[name] == max(1, int(hit or 1)):
        os.kill(os.getpid(), signal.SIGKILL)
