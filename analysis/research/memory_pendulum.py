"""Memory on velocity-masked Pendulum (issue 24, item 2: the old compounding-error headline, named for what it shows).

With the angular velocity hidden, the next observation depends on the history: a model that reads it can predict
where a one-step model cannot, however either compounds. This is a memory finding, not the TT paper's compounding
error (that is read on fully observed tasks: analysis/research/compounding_paper.py). Measured as before: from the
same start states of held-out masked episodes (reproduce.held_out_episodes), the L2 error at HORIZON of the masked TT
given its history, the same TT given none, and the one-step model.

raw per seed: {"masked": [starts, 3] L2 errors at HORIZON (TT with history, TT without, one-step), "horizon": H,
"tt_context": transitions of history the TT saw}; rows are resampled whole (paired).
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from analysis.research.reproduce import Finding, _tt_context, held_out_episodes, paired_errors

HORIZON = 10
COLUMNS = ("tt", "tt_no_history", "one_step")
AGENTS = {"tt": "masked-pendulum-tt", "one_step": "masked-pendulum-dynamics"}


def _mean(col: str) -> Callable[[dict], float]:
    return lambda raw: float(np.mean(np.asarray(raw["masked"])[:, COLUMNS.index(col)]))


def _diff(a: str, b: str) -> Callable[[dict], float]:
    return lambda raw: float(np.mean(np.asarray(raw["masked"])[:, COLUMNS.index(a)]
                                     - np.asarray(raw["masked"])[:, COLUMNS.index(b)]))


TITLE = "Memory on masked Pendulum: history, not sequence modelling"
SETTING = "POMDP (velocity-masked Pendulum), held-out episodes, paired starts, H = 10"
PAPER_VALUE = {"value": None, "where": "", "reason": "not a paper's claim: the memory half of our earlier "
                                                     "compounding-error finding, named for what it shows"}

METRICS: dict[str, Callable[[dict], float]] = {
    "history_minus_no_history": _diff("tt", "tt_no_history"),    # < 0: history helps the TT
    "tt_minus_one_step": _diff("tt", "one_step"),
    "no_history_minus_one_step": _diff("tt_no_history", "one_step"),
    **{f"{c}_error": _mean(c) for c in COLUMNS},
}


def measure(load: Callable[[str], object], datasets: Callable[[str], object], seed: int = 0,
            quick: bool = False) -> Finding:
    tt, dyn = load(AGENTS["tt"]), load(AGENTS["one_step"])
    ho, is_held_out = held_out_episodes(datasets("masked-pendulum"), seed, 8 if quick else 32)
    c = _tt_context(tt, HORIZON)
    errors, starts = paired_errors({"tt": (tt, c), "tt_no_history": (tt, 0), "one_step": (dyn, 0)}, ho, HORIZON,
                                   64 if quick else 256, seed)
    raw = {"masked": errors, "horizon": HORIZON, "tt_context": int(c)}
    nums = {"fully_observed": False, "horizon": HORIZON, "tt_context": int(c), "n_starts": int(len(starts)),
            "held_out": bool(is_held_out), **{k: round(fn(raw), 4) for k, fn in METRICS.items()}}
    measured = (f"velocity-masked Pendulum, H={HORIZON}, {len(starts)} paired held-out starts: TT with {c} transitions "
                f"of history {nums['tt_error']:g}, the same TT with none {nums['tt_no_history_error']:g}, one-step "
                f"model {nums['one_step_error']:g}")
    return Finding("memory_pendulum", "Memory on velocity-masked Pendulum: history, not sequence modelling",
                   "With the velocity hidden, a model that reads the history predicts the next observations better than "
                   "one that reads the current observation alone.", measured, None, nums, {}, raw, {}, seed,
                   flags={"held_out": bool(is_held_out), "paired": True, "fully_observed": False})
