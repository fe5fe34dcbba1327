"""The episode player's first render, warm (issue 16: < 3 s): analysis.media.player.build on a 500-step CartPole episode
with the shipped cartpole-dt agent (frames, attention, credit, the return head's predictions).

Warm: this process has loaded the agent, torch (1 thread, as the app sets) and the renderer, and built one player
before (another episode); the measured episode's results are not cached (analysis.core.cache.CACHE is cleared before each
build: build itself is uncached, but the DT return predictions go through the cache). Ours: build as the page calls
it, the frames drawn and encoded in a second thread while the model runs. Naive twin: the same build with the frames
drawn after the model work, in the same thread (build's executor swapped for one that runs each task when its result
is asked for: the order a build without the thread would have). Same results: frames, attention, credit and
prediction arrays equal. Best of two runs each (one with --quick, on a short episode); the serial run also gives the
two parts (model, frames), whose larger one is the floor for the parallel build.
"""
from __future__ import annotations

import time
from pathlib import Path
from unittest import mock

import numpy as np

from bench.harness import one_thread, row, timed

ROOT = Path(__file__).resolve().parent.parent
TARGET_S = 3.0


class _Later:
    """A future that runs its task when its result is first asked for (and times it)."""

    def __init__(self, fn, args, spent: list):
        self._fn, self._args, self._spent, self._done = fn, args, spent, None

    def result(self):
        if self._done is None:
            t0 = time.perf_counter()
            self._done = (self._fn(*self._args),)
            self._spent.append(time.perf_counter() - t0)
        return self._done[0]


class SerialPool:
    """Stands in for build's ThreadPoolExecutor: no thread; each task runs in the caller's thread at .result()."""

    spent: list = []    # seconds of each task run (the frames), reset per build by the benchmark

    def __init__(self, *args, **kwargs):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def submit(self, fn, *args):
        return _Later(fn, args, SerialPool.spent)


def serial_build(agent, dataset, episode: int, **kw):
    """analysis.media.player.build with the frames drawn after the model work, in this thread: (data, frames seconds)."""
    from analysis.media import player
    SerialPool.spent = []
    with mock.patch.object(player, "ThreadPoolExecutor", SerialPool):
        data = player.build(agent, dataset, episode, **kw)
    return data, sum(SerialPool.spent)


def same_data(a, b) -> tuple[bool, float]:
    """(Equal frames, steps, attention, credit and prediction arrays, the largest difference of the arrays)."""
    diff, same = 0.0, a.frames == b.frames and np.array_equal(a.steps, b.steps)
    for x, y in [(a.attention, b.attention), (a.credit, b.credit),
                 *[((a.prediction or {}).get(k), (b.prediction or {}).get(k)) for k in ("real", "predicted")]]:
        if x is None or y is None:
            same = same and x is None and y is None
            continue
        same = same and np.array_equal(x, y, equal_nan=True)
        both = np.isfinite(x) & np.isfinite(y)
        diff = max(diff, float(np.abs(np.asarray(x) - np.asarray(y))[both].max(initial=0.0)))
    return bool(same), diff


def _bench(quick: bool) -> dict:
    from analysis.media import player
    from analysis.core.cache import CACHE
    from models import load_agent
    from trajectories import load_dataset
    from models.shipped import AGENT_DIR
    from trajectories.samples import SAMPLE_DIR

    with one_thread():
        agent = load_agent(AGENT_DIR / "cartpole-dt")
        ds = load_dataset(SAMPLE_DIR / "cartpole.npz")
        lengths = ds.episode_lengths
        if quick:
            warm, episode = (int(e) for e in np.argsort(lengths, kind="stable")[:2])   # the two shortest
        else:
            episode = int(np.flatnonzero(lengths == 500)[0])
            warm = int(next(e for e in range(ds.n_episodes) if e != episode and lengths[e] < 500))
        player.build(agent, ds, warm)                   # warm-up: agent, torch, captum, the renderer, Pillow
        ours_s, naive_s, model_s, frames_s = [], [], [], []
        for _ in range(1 if quick else 2):
            CACHE.clear()
            seconds, ours = timed(lambda: player.build(agent, ds, episode))
            ours_s.append(seconds)
            CACHE.clear()
            seconds, (naive, frames) = timed(lambda: serial_build(agent, ds, episode))
            naive_s.append(seconds)
            frames_s.append(frames)
            model_s.append(naive_s[-1] - frames)
    same, diff = same_data(ours, naive)
    o, b = min(ours_s), min(naive_s)
    return row(b, o, same, steps=int(ours.n), frames=len(ours.frames or []), max_abs_diff=diff,
               serial_model_s=round(min(model_s), 3), serial_frames_s=round(min(frames_s), 3),
               **{f"under_{TARGET_S:g}s": bool(o < TARGET_S)})


BENCHMARKS = {"player_first_render": _bench}
