"""glibc's allocator told to keep what the step frees.

A training step allocates and frees the same [tokens, vocabulary] tensors (100 MB each for a
512-token window of SmolLM2) every time. glibc serves blocks that large with mmap and unmaps
them on free, so the next step page-faults every page in again (and the kernel zeroes it): a
quarter of the step on a 2-core CPU (docs/results.md, "Recovery speed"). Served from the heap
and not trimmed, the freed blocks are reused as they are. Peak memory is the same working set."""
import ctypes

_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4


def keep_freed_memory():
    """True when set (glibc); False where the C library has no mallopt (then nothing changes)."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))
