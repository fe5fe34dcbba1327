"""Key-to-Door credit: how much of a Decision Transformer's attribution falls on the key-pickup step, explained
at the first phase-3 step (or the episode's last), for each target (action, return, value) and for the
trained and a randomized model. The design note (docs/ARCHITECTURE.md): return-to-go = 1 in phase 3 already
tells the DT the key was taken, so its action needs no memory; memory shows in the return/value prediction.
The episode landmarks come from analysis/interp/attribution_markers.py (re-exported here)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis.interp.attribution import Attribution, attribute_steps
from analysis.interp.attribution_markers import KeyDoorSteps, is_key_to_door, key_door_steps  # noqa: F401 - Key-to-Door names in one place
from analysis.core.inputs import training_data


def _span_fraction(res: Attribution, first: int, stop: int | None, randomized: bool) -> float:
    """Fraction of the context's |attribution| (the explained step left out) on episode steps first..stop-1
    (stop None: up to the explained step)."""
    m = res.randomized if randomized else res.trained
    per = np.abs(m.per_step()[res.mask])[:-1]
    steps = res.window_steps[res.mask][:-1]
    span = (steps >= first) & (steps < (res.step if stop is None else stop))
    return float(per[span].sum() / per.sum()) if per.sum() > 0 else float("nan")


def _span_share(res: Attribution, first: int, stop: int | None, randomized: bool) -> float:
    """Mean share over uniform of episode steps first..stop-1 (NaN when empty)."""
    if stop is None or first >= stop:
        return float("nan")
    return float(np.mean([res.share_over_uniform(s, randomized=randomized) for s in range(first, stop)]))


@dataclass
class KeyDoorCredit:
    """Credit on the key-pickup step, at one explained step per episode, for the trained and randomized model."""

    target: str
    method: str
    episodes: np.ndarray           # [E]
    key_step: np.ndarray           # [E]
    explained_step: np.ndarray     # [E]
    share: np.ndarray              # [E] share of |attribution| on the key step over uniform (trained)
    randomized_share: np.ndarray   # [E] the same on the randomized model
    share_after: np.ndarray        # [E] per-step share over uniform of the phase-1 steps after the pickup (key gone
                                   #     from the observation), NaN when the key was taken on phase 1's last step
    randomized_share_after: np.ndarray
    spearman: np.ndarray           # [E] rank correlation trained vs randomized maps
    delta: np.ndarray              # [E] IG convergence delta (NaN for other methods)
    span_share: np.ndarray | None = None             # [E] fraction of the context's |attribution| (current step left
                                                     #     out) on the key step through the end of phase 1
    randomized_span_share: np.ndarray | None = None  # [E] the same on the randomized model

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame({"episode": self.episodes, "key_step": self.key_step, "explained_step": self.explained_step,
                             "target": self.target, "method": self.method, "share_over_uniform": self.share,
                             "randomized_share_over_uniform": self.randomized_share, "share_after_key": self.share_after,
                             "randomized_share_after_key": self.randomized_share_after, "spearman": self.spearman,
                             "ig_delta": self.delta})


def key_door_credit(agent, dataset, episodes=None, target: str = "value", method: str = "ig", at: str = "phase3",
                    max_episodes: int = 32, batch: int = 16, **kwargs) -> KeyDoorCredit:
    """Share over uniform of |attribution| on the key step (context without the current step), explained
    at the first phase-3 step (`at="phase3"`) or the episode's last step (`at="last"`). Only episodes where
    the key was picked up and phase 3 was reached (within the agent's context of the key) are used."""
    if at not in ("phase3", "last"):
        raise ValueError(f"at must be 'phase3' or 'last', got '{at}'.")
    if not is_key_to_door(dataset):
        raise ValueError("key_door_credit needs a Key-to-Door dataset (9 features: agent, phase one-hot, key, door).")
    episodes = range(dataset.n_episodes) if episodes is None else episodes
    K = agent.context_length
    chosen = []
    for e in episodes:
        ep = dataset.episode(int(e))
        kd = key_door_steps(ep.observations, ep.actions)
        if kd.key_step is None or kd.phase3_step is None:
            continue
        explained = kd.phase3_step if at == "phase3" else len(ep) - 1
        if explained - kd.key_step >= K or explained <= kd.key_step:
            continue
        chosen.append((int(e), kd.key_step, explained, kd.phase2_step))
        if len(chosen) >= max_episodes:
            break
    if not chosen:
        raise ValueError("no episode picked up the key and reached phase 3 within the agent's context.")
    data = training_data(agent, dataset)
    res = []
    for i in range(0, len(chosen), batch):
        part = chosen[i:i + batch]
        res += attribute_steps(agent, dataset, [int(dataset.episode_starts[e]) + s for e, _, s, _ in part], target,
                               method, data=data, **kwargs)
    share = np.array([r.share_over_uniform(k) for r, (_, k, _, _) in zip(res, chosen)])
    rshare = np.array([r.share_over_uniform(k, randomized=True) if r.randomized else np.nan for r, (_, k, _, _) in zip(res, chosen)])
    after = np.array([_span_share(r, k + 1, p2, False) for r, (_, k, _, p2) in zip(res, chosen)])
    rafter = np.array([_span_share(r, k + 1, p2, True) if r.randomized else np.nan for r, (_, k, _, p2) in zip(res, chosen)])
    return KeyDoorCredit(target, method, np.array([c[0] for c in chosen]), np.array([c[1] for c in chosen]),
                         np.array([c[2] for c in chosen]), share, rshare, after, rafter, np.array([r.spearman for r in res]),
                         np.array([np.nan if r.trained.delta is None else r.trained.delta for r in res]),
                         np.array([_span_fraction(r, k, p2, False) for r, (_, k, _, p2) in zip(res, chosen)]),
                         np.array([_span_fraction(r, k, p2, True) if r.randomized else np.nan
                                   for r, (_, k, _, p2) in zip(res, chosen)]))
