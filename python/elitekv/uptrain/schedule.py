"""Learning rate: linear warm-up, then cosine decay to a floor (both stages)."""
import math


def warmup_cosine(step, total, peak, warmup, floor_fraction=0.1):
    """lr at optimizer step `step` (0-based) of `total`."""
    if warmup > 0 and step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * (floor_fraction + (1 - floor_fraction) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))
