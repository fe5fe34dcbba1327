"""The helpers every speed benchmark shares: one torch thread, a best-of timer, and the result row.

The row is the CLI JSON contract of docs/ARCHITECTURE.md: `baseline_s`, `ours_s`, `ratio`, `same_results`,
plus whatever the benchmark adds; `run_all` puts the benchmark's `name` in front.
"""
from __future__ import annotations

import time
from contextlib import contextmanager


@contextmanager
def one_thread():
    """Torch on one intra-op thread inside the block, the caller's thread count restored after it.

    On a shared 2-core machine, OpenMP threads waiting for a descheduled sibling cost milliseconds per op,
    which buries the per-step cost being measured; both sides of a benchmark run under the same setting."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def timed(fn, repeat: int = 1):
    """(best seconds, that call's result) over `repeat` calls of fn(); warm-ups are the caller's to make."""
    best = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        seconds = time.perf_counter() - t0
        if best is None or seconds < best[0]:
            best = (seconds, out)
    return best


def row(baseline_s: float, ours_s: float, same, digits: int = 3, ratio_digits: int = 2, **extra) -> dict:
    """The result row: both times rounded to `digits`, their ratio (from the unrounded times) to `ratio_digits`."""
    return {"baseline_s": round(baseline_s, digits), "ours_s": round(ours_s, digits),
            "ratio": round(baseline_s / ours_s, ratio_digits), "same_results": bool(same), **extra}
