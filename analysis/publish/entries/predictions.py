"""Catalog entries for predictions: a model's open-loop prediction of a logged episode and its error by horizon."""
from __future__ import annotations

from analysis.publish.catalog import Figured, register
from analysis.publish.figures import error_vs_horizon, prediction_traces
from analysis.publish.figures.labels import data_name
from analysis.publish.figures.text import plain
from analysis.behaviour.predictions import error_by_horizon, model_label, predicted_vs_real


@register("predicted_vs_real", "a model's predicted states and rewards beside the logged episode")
def make_predicted_vs_real(agent, dataset, episode: int = 0, start: int = -1, horizon: int = 20) -> Figured:
    res = predicted_vs_real(agent, dataset, episode, None if start is None or start < 0 else start, horizon)
    fig = prediction_traces(res, f"Predicted vs real — {plain(model_label(agent))}, episode {res.episode} of "
                                 f"{data_name(dataset)}")
    return Figured("predicted_vs_real", fig, res.to_frame(),
                   {"episode": int(episode), "start": res.start if res.start is not None else -1, "horizon": int(horizon)})


@register("prediction_error", "open-loop state prediction error by horizon, with bootstrap CIs and the TT floor")
def make_prediction_error(agent, dataset, horizons: int = 20, n_starts: int = 256, seed: int = 0) -> Figured:
    res = error_by_horizon(agent, dataset, horizons, n_starts, seed, name=model_label(agent))
    fig = error_vs_horizon([res], f"Open-loop prediction error — {data_name(dataset)}")
    return Figured("prediction_error", fig, res.to_frame(),
                   {"horizons": int(horizons), "n_starts": int(n_starts), "seed": int(seed)})
