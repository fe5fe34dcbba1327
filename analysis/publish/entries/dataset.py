"""Catalog entries for dataset-only figures (no agent needed)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.publish.catalog import Figured, register
from analysis.publish.figures import episode_timeline, returns_histogram
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
