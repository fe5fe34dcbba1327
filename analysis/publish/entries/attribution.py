"""Catalog entries for credit assignment: a Decision Transformer's (or baseline's) credit per timestep and per
feature beside a randomized model, and Key-to-Door credit on the key step for each target."""
from __future__ import annotations

import pandas as pd

from analysis.interp.attribution import TARGETS, attribute_step
from analysis.core.cache import cached
from analysis.publish.catalog import Figured, register
from analysis.publish.figures import attribution_features, attribution_timesteps, key_door_credit_bars
from analysis.publish.figures.labels import action_names, data_name
from analysis.interp.keydoor_credit import key_door_credit


def _attribution(agent, dataset, episode, step, target, method, seed):
    """attribute_step through the one cache (analysis/core/cache.py): a page's two views of one step share one computation."""
    return cached("attribution", lambda: attribute_step(agent, dataset, int(episode), step, target, method, seed=int(seed)),
                  agent, dataset, episode=int(episode), step=step, target=target, method=method, seed=int(seed))


def _params(episode, step, target, method, seed, res) -> dict:
    return {"episode": int(episode), "step": res.step, "target": target, "method": method, "seed": int(seed)}


@register("attribution_timesteps", "credit per timestep and token (R, s, a) for one DT output at one step, "
          "beside a randomized model, with the reward timeline")
def make_attribution_timesteps(agent, dataset, episode: int = 0, step: int | None = None, target: str = "action",
                               method: str = "ig", seed: int = 0) -> Figured:
    res = _attribution(agent, dataset, episode, step, target, method, seed)
    fig = attribution_timesteps(res, data=data_name(dataset), action_names=action_names(agent, dataset))
    return Figured("attribution_timesteps", fig, res.steps_frame(), _params(episode, step, target, method, seed, res))


@register("attribution_features", "signed credit per input feature and step for one DT output, beside a randomized model")
def make_attribution_features(agent, dataset, episode: int = 0, step: int | None = None, target: str = "action",
                              method: str = "ig", seed: int = 0) -> Figured:
    res = _attribution(agent, dataset, episode, step, target, method, seed)
    fig = attribution_features(res, data=data_name(dataset), action_names=action_names(agent, dataset))
    return Figured("attribution_features", fig, res.to_frame(), _params(episode, step, target, method, seed, res))


@register("attribution_keydoor", "Key-to-Door: credit on the key-pickup step over uniform, action vs return vs "
          "value prediction, trained vs randomized model")
def make_attribution_keydoor(agent, dataset, method: str = "ig", at: str = "phase3", max_episodes: int = 16,
                             seed: int = 0) -> Figured:
    frames = {t: key_door_credit(agent, dataset, target=t, method=method, at=at, max_episodes=int(max_episodes),
                                 seed=int(seed)).to_frame() for t in TARGETS}
    where = "the first phase-3 step" if at == "phase3" else "the episode's last step"
    fig = key_door_credit_bars(frames, explained_at=where, data=data_name(dataset))
    return Figured("attribution_keydoor", fig, pd.concat(list(frames.values()), ignore_index=True),
                   {"method": method, "at": at, "max_episodes": int(max_episodes), "seed": int(seed)})
