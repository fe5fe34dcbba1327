"""Catalog entries for dataset-only figures (no agent needed)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.publish.catalog import Figured, register
from analysis.publish.figures import episode_signals, episode_timeline, returns_histogram
from analysis.publish.figures.dataset import MAX_STRIP, episode_frames, frames_rgb
from analysis.publish.figures.labels import action_labels
from analysis.publish.figures.text import plain


@register("returns_histogram", "distribution of episode returns in the dataset", needs_agent=False)
def make_returns_histogram(agent, dataset, bins: int = 30) -> Figured:
    returns = dataset.episode_returns
    fig = returns_histogram(returns, f"Episode returns — {plain(dataset.source)}", bins=bins)
    data = pd.DataFrame({"episode": np.arange(len(returns)), "return": returns,
                         "length": dataset.episode_lengths})
    return Figured("returns_histogram", fig, data, {"bins": bins})


@register("episode_timeline", "reward per step and return-to-go over one episode", needs_agent=False)
def make_episode_timeline(agent, dataset, episode: int = 0) -> Figured:
    ep = dataset.episode(int(episode))
    rtg = ep.returns_to_go
    fig = episode_timeline(ep.rewards, rtg, f"Episode {episode}: reward and return-to-go — {plain(dataset.source)}")
    data = pd.DataFrame({"step": np.arange(len(ep)), "reward": ep.rewards, "return_to_go": rtg})
    return Figured("episode_timeline", fig, data, {"episode": int(episode)})


def _action_labels(dataset) -> list[str] | None:
    """A discrete dataset's action names (its own labels, else its environment's, else "action i"); None for
    continuous actions."""
    return action_labels(dataset, dataset.n_actions) if dataset.discrete else None


@register("episode_observations", "one episode's observations, one line per feature", needs_agent=False)
def make_episode_observations(agent, dataset, episode: int = 0) -> Figured:
    dataset.require_vectors("A line per observation feature")   # images: the episode_frames figure
    ep = dataset.episode(int(episode))
    obs = np.asarray(ep.observations).reshape(len(ep), -1)
    fig = episode_signals(obs, dataset.obs_names, f"Observations — episode {int(episode)} of {plain(dataset.source)}",
                          "value")
    data = pd.DataFrame({"step": np.arange(len(ep)), **{n: obs[:, j] for j, n in enumerate(dataset.obs_names)}})
    return Figured("episode_observations", fig, data, {"episode": int(episode)})


@register("episode_actions", "one episode's actions (discrete: the action taken at each step)", needs_agent=False)
def make_episode_actions(agent, dataset, episode: int = 0) -> Figured:
    ep = dataset.episode(int(episode))
    labels = _action_labels(dataset)
    acts = np.asarray(ep.actions).reshape(len(ep), -1)
    fig = episode_signals(acts, dataset.act_names, f"Actions — episode {int(episode)} of {plain(dataset.source)}",
                          "action", labels)
    data = pd.DataFrame({"step": np.arange(len(ep)), **{n: acts[:, j] for j, n in enumerate(dataset.act_names)}})
    if labels is not None:
        data["action_label"] = [labels[a] if 0 <= a < len(labels) else str(a) for a in acts[:, 0]]
    return Figured("episode_actions", fig, data, {"episode": int(episode)})


def frame_steps(length: int, start: int, stop: int, frames: int) -> np.ndarray:
    """`frames` steps spread evenly from `start` to `stop` (inclusive; -1: the episode's last step), each once."""
    stop = length - 1 if stop < 0 else stop
    if not 0 <= start <= stop < length:
        raise ValueError(f"steps must satisfy 0 <= start <= stop < {length} (the episode's length); got start {start}, stop {stop}.")
    if not 1 <= frames <= MAX_STRIP:
        raise ValueError(f"frames must be 1 to {MAX_STRIP}, got {frames}.")
    return np.unique(np.linspace(start, stop, frames).round().astype(np.int64))


FACING = "→↓←↑"   # MiniGrid's direction: 0 right (+x), 1 down (+y), 2 left, 3 up


def _facing(direction: int) -> str:
    return FACING[direction] if 0 <= direction < 4 else str(direction)


@register("episode_frames", "one episode's image or grid observations at a few steps, as pictures", needs_agent=False)
def make_episode_frames(agent, dataset, episode: int = 0, start: int = 0, stop: int = -1, frames: int = 8) -> Figured:
    if not dataset.shaped:
        raise ValueError(f"{dataset.source}'s observations are vectors ({dataset.obs_dim} values): the "
                         "episode_observations figure draws them.")
    ep = dataset.episode(int(episode))
    steps = frame_steps(len(ep), int(start), int(stop), int(frames))
    raw = np.asarray(ep.observations[steps])        # only the chosen frames are read from a mapped file
    grid = dataset.obs_kind == "grids"
    pictures = frames_rgb(raw, grid)
    direction = ep.extras.get("direction")
    mission = ep.extras.get("mission")
    labels = [f"step {int(t)}" + (f"<br>facing {_facing(int(direction[t]))}" if direction is not None else "")
              for t in steps]
    missions = [dataset.missions[int(c)] for c in mission[steps]] if mission is not None else None
    title = f"Observations — episode {int(episode)} of {plain(dataset.source)}<br><sup>{dataset.obs_shape_text} " \
            f"{dataset.obs_kind}"
    if dataset.obs_kind == "frame stacks":
        title += f", the newest of each stack of {dataset.obs_shape[0]} drawn"
    if missions:
        title += f"; mission: {plain(missions[0][:120])}" + (" (changes within the episode)" if len(set(missions)) > 1 else "")
    fig = episode_frames(pictures, labels, title + "</sup>")
    data = pd.DataFrame({"step": steps, "mean_value": raw.reshape(len(steps), -1).astype(np.float64).mean(axis=1)})
    if direction is not None:
        data["direction"] = direction[steps]
    if missions is not None:
        data["mission"] = missions
    return Figured("episode_frames", fig, data, {"episode": int(episode), "start": int(start), "stop": int(stop),
                                                 "frames": int(frames)})
