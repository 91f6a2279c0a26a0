"""Statistics of the samples, and how the table writes times and sizes."""

import math
import statistics


def median(samples):
    return statistics.median(samples)


def p95(samples):
    """Nearest rank: a value that was measured, also for a handful of samples."""
    ordered = sorted(samples)
    return ordered[math.ceil(0.95 * len(ordered)) - 1]


def seq_bytes(n):
    """What `seq 1 N` prints: each number and its newline."""
    total, digits, low = 0, 1, 1
    while low <= n:
        high = min(n, low * 10 - 1)
        total += (high - low + 1) * (digits + 1)
        digits, low = digits + 1, low * 10
    return total


def ms(seconds):
    return round(seconds * 1000, 3)


def fmt_time(seconds):
    if seconds < 0.1:
        return f"{seconds * 1000:.2f} ms"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    return f"{seconds:.2f} s"


def fmt_bytes(n):
    """Decimal units, as the targets are written (55 MB of output, 150 MB of memory)."""
    if n < 1000:
        return f"{n} B"
    if n < 1000_000:
        return f"{n / 1000:.1f} kB"
    return f"{n / 1000_000:.1f} MB"
