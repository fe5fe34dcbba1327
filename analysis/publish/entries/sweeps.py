"""Catalog entries for return conditioning: the return-to-go sweep in the environment (returns, actions,
attention per target) and the offline shift replay of a logged episode."""
from __future__ import annotations

import numpy as np

from analysis.publish import figures as _fig
from analysis.publish.catalog import Figured, register
from analysis.publish.figures.labels import action_dim_names, action_labels, data_name, readable
from analysis.publish.figures.text import plain
from analysis.behaviour.sweeps import cached_sweep, default_shifts, default_targets, return_range, rtg_shift_replay, sweep_attention


def _sweep(agent, dataset, targets, episodes, seed):
    """The sweep runs in the environment; the dataset only suggests the default targets, which the params then name
    (so the figure is remade from the agent alone: Figured.uses_dataset False)."""
    targets = default_targets(agent, dataset=dataset) if targets is None else [float(t) for t in targets]
    return cached_sweep(agent, targets, episodes, seed), {"targets": targets, "episodes": int(episodes), "seed": int(seed)}


def _range(agent, dataset):
    try:
        return return_range(agent, dataset)
    except ValueError:
        return None


@register("rtg_sweep_returns", "achieved vs target return (mean, IQM, 95% CIs) in the environment")
def make_sweep_returns(agent, dataset, targets: list | None = None, episodes: int = 8, seed: int = 0) -> Figured:
    sw, params = _sweep(agent, dataset, targets, episodes, seed)
    s = sw.summary()
    fig = _fig.sweep_returns(s, f"Return conditioning: achieved vs target return ({plain(sw.env_id)}, {episodes} episodes per target)",
                             _range(agent, dataset))
    return Figured("rtg_sweep_returns", fig, s, params, uses_dataset=False)


@register("rtg_sweep_actions", "the actions taken, per target return")
def make_sweep_actions(agent, dataset, targets: list | None = None, episodes: int = 8, seed: int = 0) -> Figured:
    sw, params = _sweep(agent, dataset, targets, episodes, seed)
    dist = sw.action_distribution(agent.config.n_actions)
    names = (action_labels(dataset, agent.config.n_actions, sw.env_id) if sw.discrete
             else action_dim_names(dataset, int(agent.config.act_dim), sw.env_id))
    fig = _fig.sweep_actions(dist, sw.discrete, f"Actions taken per target return ({plain(sw.env_id)})", names)
    return Figured("rtg_sweep_actions", fig, dist, params, uses_dataset=False)


@register("rtg_sweep_attention", "where the action token looks, per target return")
def make_sweep_attention(agent, dataset, targets: list | None = None, episodes: int = 8, seed: int = 0) -> Figured:
    sw, params = _sweep(agent, dataset, targets, episodes, seed)
    shares = sweep_attention(agent, sw)
    fig = _fig.sweep_attention(shares, f"Where the action token looks, per target return ({plain(sw.env_id)})")
    return Figured("rtg_sweep_attention", fig, shares, params, uses_dataset=False)


@register("rtg_shift_replay", "offline what-if: a logged episode replayed with its return-to-go shifted")
def make_shift_replay(agent, dataset, episode: int = 0, shifts: list | None = None) -> Figured:
    shifts = default_shifts(agent, dataset) if shifts is None else [float(s) for s in shifts]
    r = rtg_shift_replay(agent, dataset, int(episode), shifts)
    dim = plain(readable(action_dim_names(dataset, int(agent.config.act_dim))[0])) if not r.discrete else ""
    if r.discrete:
        series, logged, y = r.logged_action_probability(), None, "P(logged action)"
    else:
        series, logged, y = r.predictions[..., 0], np.asarray(r.logged_actions).reshape(len(r.logged_actions), -1)[:, 0], dim
    sampled = "" if len(r.steps) == r.length else f" ({len(r.steps)} of its {r.length} steps, evenly spaced)"
    fig = _fig.shift_replay(r.shifts, series, logged, f"Episode {episode} replayed with its return-to-go shifted{sampled}"
                            f" — {data_name(dataset)}", y, r.steps, f"logged {dim}" if dim else "logged action")
    fig.update_yaxes(range=[0, 1.02] if r.discrete else None)
    return Figured("rtg_shift_replay", fig, r.to_frame(), {"episode": int(episode), "shifts": shifts})
