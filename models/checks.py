"""Whether an agent and what it is given fit together: a dataset (observation size, action kind and count) and
target returns (against the returns it was trained on). One sentence each, never a shape error deep in torch."""
from __future__ import annotations

from trajectories import Dataset

from .base import Agent
from .errors import AgentError


def check_targets(agent: Agent, targets) -> list[str]:
    """Warnings for targets far outside the returns the agent was trained on."""
    d = agent.config.dataset
    if not targets or "return_min" not in d:
        return []
    lo, hi = d["return_min"], d["return_max"]
    span = max(hi - lo, 1e-6)
    out = []
    for t in targets:
        if t > hi + 0.25 * span or t < lo - 0.25 * span:
            out.append(f"target return {t:g} is far outside the training data's returns ({lo:g} .. {hi:g}); "
                       "expect the agent to behave as for the nearest return it has seen.")
    return out


def check_dataset(agent: Agent, ds: Dataset) -> None:
    """A dataset the agent cannot read gets one sentence, not a shape error deep in torch."""
    name = ds.source
    if ds.obs_dim != agent.obs_dim:
        raise AgentError(f"{name} has {ds.obs_dim} observation features but the {agent.kind} agent expects {agent.obs_dim}"
                         f"{f' (it was trained on {agent.config.env_id})' if agent.config.env_id else ''}.")
    if ds.discrete != agent.discrete:
        kinds = {True: "discrete", False: "continuous"}
        raise AgentError(f"{name} has {kinds[ds.discrete]} actions but the {agent.kind} agent takes {kinds[agent.discrete]} actions.")
    if ds.discrete and ds.n_actions > agent.config.n_actions:
        raise AgentError(f"{name} uses {ds.n_actions} discrete actions but the agent knows {agent.config.n_actions}.")
    if not ds.discrete and ds.act_dim != agent.act_dim:
        raise AgentError(f"{name} has {ds.act_dim}-d actions but the agent acts in {agent.act_dim} dimensions.")
