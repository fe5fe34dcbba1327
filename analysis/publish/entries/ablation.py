"""Catalog entries for ablation: zero- or mean-ablated heads and MLPs, on data and in the environment (issue 14),
and a Trajectory Transformer's ablation and head-output patching on its token stream."""
from __future__ import annotations

import numpy as np

from analysis.interp.ablation import ablation, default_ablation
from analysis.publish.catalog import Figured, register
from analysis.publish.figures.ablation import ablation_figure, tt_ablation_figure, tt_patching_figure
from analysis.publish.figures.text import plain
from analysis.interp.tt_causal import tt_ablation, tt_head_patching


def _ablate(agent, ablate):
    """None: the last layer's heads; anything else as given (an empty set is refused with one sentence)."""
    return default_ablation(agent) if ablate is None else ablate


@register("ablation", "zero- or mean-ablate heads and MLPs of a Decision Transformer: action prediction on the dataset "
                      "(and return in the environment with episodes > 0), intact vs ablated")
def make_ablation(agent, dataset, ablate: list | None = None, mode: str = "zero", n_steps: int = 4000, episodes: int = 0,
                  target_return: float = float("nan"), seed: int = 0) -> Figured:
    from models.env_choice import can_act

    ablate = _ablate(agent, ablate)
    target = None if target_return is None or np.isnan(target_return) else float(target_return)
    run_env = int(episodes) > 0 and can_act(agent)
    res = ablation(agent, dataset, ablate, mode=mode, n_steps=n_steps, episodes=int(episodes) if run_env else 0,
                   target_return=target, seed=seed)
    if int(episodes) > 0 and not run_env:
        res.note = "no environment run: the agent names no environment that can be made here"
    fig = ablation_figure(res, f"Ablation — {plain(res.agent)}, {plain(dataset.source)}")
    return Figured("ablation", fig, res.to_frame(),
                   {"ablate": res.components, "mode": mode, "n_steps": int(n_steps), "episodes": int(episodes),
                    "target_return": res.env.target_return if res.env is not None else target, "seed": int(seed)})


@register("tt_ablation", "zero- or mean-ablate heads and MLPs of a Trajectory Transformer: change in its teacher-forced "
                         "next-state, reward and value prediction error")
def make_tt_ablation(agent, dataset, ablate: list | None = None, mode: str = "zero", n_windows: int = 256, seed: int = 0,
                     decoding: str = "argmax") -> Figured:
    ablate = _ablate(agent, ablate)
    res = tt_ablation(agent, dataset, ablate, mode=mode, n_windows=n_windows, seed=seed, decoding=decoding)
    fig = tt_ablation_figure(res, f"Ablation — {plain(res.agent)}, {plain(dataset.source)}")
    return Figured("tt_ablation", fig, res.to_frame(),
                   {"ablate": res.components, "mode": mode, "n_windows": int(n_windows), "seed": int(seed),
                    "decoding": decoding})


@register("tt_patching_heads", "patch each head's (and MLP's) output of a Trajectory Transformer from a clean window into "
                               "a corrupted one: layer x head map of the effect on the predicted next state, reward or value")
def make_tt_patching_heads(agent, dataset, episode: int = 0, step: int = -1, corrupted_episode: int = -1,
                           corrupted_step: int = -1, back: int = 0, donor_episode: int = -1, donor_step: int = -1,
                           target: str = "state", decoding: str = "mean", seed: int = 0) -> Figured:
    """step -1: the middle of the episode. corrupted_episode >= 0: that episode's window at corrupted_step (-1: the
    same step) is the corrupted input; else the clean window with the current observation (back 0) or the
    transition `back` steps back replaced from donor_episode / donor_step (-1: drawn with the seed)."""
    if target not in ("state", "reward", "value"):
        raise ValueError(f"target must be 'state', 'reward' or 'value', got {target!r}.")
    if not 0 <= int(episode) < dataset.n_episodes:
        raise ValueError(f"episode {episode} does not exist: {dataset.source} has episodes 0-{dataset.n_episodes - 1}.")
    s = int(step) if int(step) >= 0 else max(0, int(dataset.episode_lengths[int(episode)]) // 2 - 1)
    corrupted = None
    if int(corrupted_episode) >= 0:
        corrupted = (int(corrupted_episode), s if int(corrupted_step) < 0 else int(corrupted_step))
    donor = None
    if int(donor_episode) >= 0:
        if not 0 <= int(donor_episode) < dataset.n_episodes:
            raise ValueError(f"donor episode {donor_episode} does not exist: {dataset.source} has episodes "
                             f"0-{dataset.n_episodes - 1}.")
        donor = (int(donor_episode), int(donor_step) if int(donor_step) >= 0 else int(dataset.episode_lengths[int(donor_episode)]) // 2)
    res = tt_head_patching(agent, dataset, (int(episode), s), corrupted, back=int(back), donor=donor, decoding=decoding,
                           seed=int(seed))
    fig = tt_patching_figure(res, target, f"Head-output patching — {plain(res.agent)}, {plain(dataset.source)}")
    return Figured("tt_patching_heads", fig, res.to_frame(target),
                   {"episode": int(episode), "step": s, "corrupted_episode": int(corrupted_episode),
                    "corrupted_step": int(corrupted_step), "back": int(back), "donor_episode": int(donor_episode),
                    "donor_step": int(donor_step), "target": target, "decoding": decoding, "seed": int(seed)})
