"""Catalog entries that compare the agent under study with other shipped agents on the same data: the
sequence model's open-loop error against a single-step dynamics model's (compounding error)."""
from __future__ import annotations

import pandas as pd

from models.errors import AgentError
from models.report import AGENT_DIR

from .catalog import Figured, register
from .predictions import error_by_horizon


def shipped_agent(name: str):
    from models import load_agent

    path = AGENT_DIR / name
    if not (path / "config.json").is_file():
        known = sorted(p.name for p in AGENT_DIR.iterdir() if (p / "config.json").is_file()) if AGENT_DIR.is_dir() else []
        raise AgentError(f"no shipped agent '{name}'; shipped: {', '.join(known)}.")
    return load_agent(path).eval()


def _label(agent, name: str) -> str:
    return f"{name} ({agent.kind.upper()})"


@register("prediction_error_compare", "open-loop error by horizon of this agent and other shipped predictors "
          "(e.g. a TT vs a one-step dynamics model), with CIs and the TT quantization floor")
def make_prediction_error_compare(agent, dataset, others: list | None = None, horizons: int = 20, n_starts: int = 256,
                                  seed: int = 0, label: str = "this agent") -> Figured:
    from .figures import error_vs_horizon

    models = [(label, agent)] + [(o, shipped_agent(o)) for o in (others or [])]
    results = [error_by_horizon(a, dataset, int(horizons), int(n_starts), int(seed), name=_label(a, n)) for n, a in models]
    fig = error_vs_horizon(results, f"Open-loop prediction error vs horizon — {dataset.source}")
    data = pd.concat([r.to_frame() for r in results], ignore_index=True)
    return Figured("prediction_error_compare", fig, data, {"others": list(others or []), "horizons": int(horizons),
                                                           "n_starts": int(n_starts), "seed": int(seed), "label": label})
