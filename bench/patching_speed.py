"""Activation patching: the whole layer x position residual grid for one step of the shipped cartpole-dt (3 layers,
K=20, banded: the action at a step reads a 60-step receptive field, so the grid is 4 residual points x 179 tokens).

Ours: analysis.interp.patching.Patcher.positions — cells that cannot change the output left out; each cell runs only what
its patch changes and the output reads (DecisionTransformer.run_suffix): from the patched block on, only the
positions within the band's reach of both the patch and the output, against the corrupted run's cached keys and
values, the last block for the s_t token only; positions of a row a few tokens apart share a batch. Naive twin: Patcher.positions_naive, one plain run_with_cache over
the whole window with one intervention per (point, position). Clean = episode 0 at step 100, corrupted =
episode 1 at step 100; the output is the logit of the logged action. Every cell must agree (1e-5).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from bench.harness import one_thread, row, timed

ROOT = Path(__file__).resolve().parent.parent


def _bench(quick: bool) -> dict:
    from analysis.core.inputs import training_data
    from analysis.interp.patching import make_pair, patcher
    from models import load_agent
    from trajectories import load_dataset
    from models.shipped import AGENT_DIR
    from trajectories.samples import SAMPLE_DIR

    with one_thread():
        agent = load_agent(AGENT_DIR / "cartpole-dt")
        ds = load_dataset(SAMPLE_DIR / "cartpole.npz")
        pair = make_pair(agent, ds, episode=0, step=100, corrupt="episode", corrupt_episode=1,
                         context=4 if quick else None, data=training_data(agent, ds))
        p = patcher(agent, pair, "action")
        p.positions()                               # warm-up
        ours_s, ours = timed(p.positions, repeat=1 if quick else 3)
        naive_s, naive = timed(p.positions_naive)
    diff = float(np.abs(ours.patched - naive.patched).max())
    return row(naive_s, ours_s, np.allclose(ours.patched, naive.patched, rtol=1e-5, atol=1e-5), digits=4,
               window_steps=pair.steps, cells=int(ours.patched.size), cells_run=int(ours.computed.sum()),
               forwards=ours.forwards, naive_forwards=naive.forwards, max_abs_diff=diff)


BENCHMARKS = {"patching_grid": _bench}
