"""Comparisons of the agent under study with other shipped agents on the same data: the sequence model's
open-loop error against a single-step dynamics model's (compounding error)."""
from __future__ import annotations

from models.errors import AgentError
from models.shipped import AGENT_DIR, shipped_agents

from analysis.behaviour.predictions import HorizonError, error_by_horizon


def shipped_agent(name: str):
    from models import load_agent

    path = AGENT_DIR / name
    if not (path / "config.json").is_file():
        known = list(shipped_agents())
        raise AgentError(f"no shipped agent '{name}'; shipped: {', '.join(known)}.")
    return load_agent(path).eval()


def compare_error_by_horizon(agent, dataset, others=(), horizons: int = 20, n_starts: int = 256, seed: int = 0,
                             label: str = "this agent") -> list[HorizonError]:
    """error_by_horizon of `agent` (named `label`) and of each shipped agent named in `others`, in that order,
    each named "name (KIND)"."""
    models = [(label, agent)] + [(o, shipped_agent(o)) for o in (others or [])]
    return [error_by_horizon(a, dataset, int(horizons), int(n_starts), int(seed), name=f"{n} ({a.kind.upper()})")
            for n, a in models]
