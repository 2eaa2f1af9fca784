"""Progress lines with rate and ETA on stderr, in the C++ tools' style ("name: i/n unit ...")."""
import sys
import time

_quiet = False


def silence():
    """No more lines from this process (a torchrun process other than the first)."""
    global _quiet
    _quiet = True


def log(message):
    if _quiet:
        return
    print(f"[uptrain] {message}", file=sys.stderr, flush=True)


class Progress:
    def __init__(self, name, total, unit, every_seconds=5.0):
        self.name, self.total, self.unit, self.every = name, total, unit, every_seconds
        self.start = self.last = time.monotonic()
        self.done = 0

    def advance(self, count=1, note=""):
        self.done += count
        now = time.monotonic()
        if _quiet or (now - self.last < self.every and self.done < self.total):
            return
        self.last = now
        rate = self.done / max(now - self.start, 1e-9)
        eta = (self.total - self.done) / rate if rate > 0 else float("inf")
        suffix = f", {note}" if note else ""
        print(f"{self.name}: {self.done}/{self.total} {self.unit} ({100 * self.done / self.total:.0f}%) "
              f"{rate:.2f} {self.unit}/s, ETA {format_seconds(eta)}{suffix}", file=sys.stderr, flush=True)

    def elapsed(self):
        return time.monotonic() - self.start


def format_seconds(seconds):
    if seconds == float("inf"):
        return "?"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
