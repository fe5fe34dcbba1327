"""Catalog entries that compare the agent under study with other shipped agents on the same data."""
from __future__ import annotations

import pandas as pd

from analysis.publish.catalog import Figured, register
from analysis.behaviour.compounding import compare_error_by_horizon
from analysis.publish.figures import error_vs_horizon
from analysis.publish.figures.text import plain


@register("prediction_error_compare", "open-loop error by horizon of this agent and other shipped predictors "
          "(e.g. a TT vs a one-step dynamics model), with CIs and the TT quantization floor")
def make_prediction_error_compare(agent, dataset, others: list | None = None, horizons: int = 20, n_starts: int = 256,
                                  seed: int = 0, label: str = "this agent") -> Figured:
    results = compare_error_by_horizon(agent, dataset, others or [], horizons, n_starts, seed, label)
    fig = error_vs_horizon(results, f"Open-loop prediction error vs horizon — {plain(dataset.source)}")
    data = pd.concat([r.to_frame() for r in results], ignore_index=True)
    return Figured("prediction_error_compare", fig, data, {"others": list(others or []), "horizons": int(horizons),
                                                           "n_starts": int(n_starts), "seed": int(seed), "label": label})
