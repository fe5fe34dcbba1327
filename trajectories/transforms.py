"""Pure Dataset -> Dataset transforms the findings train on (issue 24): delayed rewards, and the best episodes by
return (the episodes %BC clones). Both return a new Dataset and leave the given one as it was."""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from .dataset import Dataset


def delayed_rewards(ds: Dataset, env_id: str | None = None) -> Dataset:
    """`ds` with each episode's summed reward on its last step and 0 on every other step (the DT paper's delayed
    return): episode returns, and the return-to-go at each episode's first step, are unchanged. env_id: the
    delayed-reward environment the new data belongs to (envs/delayed.py; default: keep ds's)."""
    rewards = np.zeros_like(ds.rewards)
    ends = ds.episode_ends - 1
    rewards[ends] = ds.episode_returns.astype(rewards.dtype)
    meta = {**ds.metadata, "delayed_rewards": True}
    return replace(ds, rewards=rewards, env_id=env_id or ds.env_id, metadata=meta,
                   source=f"delayed_rewards({ds.source})")


def best_episodes(ds: Dataset, fraction: float | None = None, min_return: float | None = None) -> np.ndarray:
    """Indices (ascending) of the episodes %BC trains on: the ceil(fraction x episodes) highest returns (ties
    broken by episode order, earliest first), or every episode with return >= min_return. Exactly one of the two."""
    if (fraction is None) == (min_return is None):
        raise ValueError("best_episodes needs exactly one of fraction (a share of episodes) or min_return.")
    ret = ds.episode_returns
    if min_return is not None:
        keep = np.flatnonzero(ret >= float(min_return))
    else:
        if not 0.0 < float(fraction) <= 1.0:
            raise ValueError(f"fraction must be in (0, 1], got {fraction}.")
        n = int(np.ceil(float(fraction) * len(ret)))
        keep = np.sort(np.argsort(-ret, kind="stable")[:n])
    if len(keep) == 0:
        raise ValueError(f"no episode has a return of at least {min_return:g} (best: {ret.max():g}).")
    return keep
