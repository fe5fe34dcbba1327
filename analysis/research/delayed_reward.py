"""Delayed reward (issue 24, item 4; the DT paper's delayed-return experiment, its Table 7 on D4RL): the same
behaviour data with each episode's reward summed onto its last step (trajectories.transforms.delayed_rewards); DT
and CQL trained on the original and on the delayed data, each evaluated where it was trained (the delayed agents in
the delayed-reward environment, envs/delayed.py: same episodes and returns, paid at the end). The paper's claim: DT
barely changes (its return-to-go at the first step is the same), TD learning collapses.

Run on CartPole (+1 every step; the shipped cartpole data): Key-to-Door already pays only on its last step, so its
delayed data is its data (tests/test_transforms.py).

`measure(load, datasets, seed, quick) -> Finding` (unconcluded); `METRICS`: pure functions of one seed's raw values.
raw per seed: {"returns": {"original" | "delayed": {"dt" | "cql": return per evaluation episode}}, "max_return":
the environment's best return (CartPole: 500)}.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import plotly.graph_objects as go

from analysis.core.stats import mean_ci
from analysis.publish import figures as F
from analysis.research.reproduce import Finding, _returns, optional_agent

VARIANTS = {"original": "rewards as logged", "delayed": "each episode's reward on its last step"}
METHODS = {"dt": "DT", "cql": "CQL"}
# recipes (models/recipes.py): the original data's DT is the shipped recipe cartpole-dt
AGENTS = {"original": {"dt": "cartpole-dt", "cql": "cartpole-cql"},
          "delayed": {"dt": "cartpole-delayed-dt", "cql": "cartpole-delayed-cql"}}
DATA = {"original": "cartpole", "delayed": "cartpole-delayed"}
MAX_RETURN = 500.0     # CartPole-v1's step limit: the return every evaluation is scored against
TARGET = 500.0         # the DTs' target return (the data's best)
EVAL_EPISODES, QUICK_EPISODES = 16, 4


# ---- metrics ---------------------------------------------------------------------------------------------------
def mean_return(raw: dict, variant: str, method: str) -> float:
    return float(np.mean(raw["returns"][variant][method]))


def score(raw: dict, variant: str, method: str) -> float:
    """Mean return as a share of the best return (1: every episode to the limit)."""
    return mean_return(raw, variant, method) / float(raw["max_return"])


def kept(raw: dict, method: str) -> float:
    """Delayed-data mean return / original-data mean return (1: unaffected by the delay; NaN if the original is 0)."""
    base = mean_return(raw, "original", method)
    return mean_return(raw, "delayed", method) / base if base else float("nan")


def drop(raw: dict, method: str) -> float:
    """Score lost to the delay: original score - delayed score."""
    return score(raw, "original", method) - score(raw, "delayed", method)


TITLE = "Delayed reward: DT vs CQL with all reward on the last step"
SETTING = "fully observed CartPole, every episode's reward moved to its last step (the DT paper's delayed return)"
PAPER_VALUE = {"value": None, "where": "Chen et al. 2021, delayed (sparse) return table",
               "reason": "D4RL MuJoCo returns (DT holds, CQL collapses); no CartPole number"}

METRICS: dict[str, Callable[[dict], float]] = {
    **{f"{m}_return_{v}": (lambda r, v=v, m=m: mean_return(r, v, m)) for v in VARIANTS for m in METHODS},
    **{f"{m}_score_{v}": (lambda r, v=v, m=m: score(r, v, m)) for v in VARIANTS for m in METHODS},
    **{f"{m}_kept": (lambda r, m=m: kept(r, m)) for m in METHODS},
    **{f"{m}_drop": (lambda r, m=m: drop(r, m)) for m in METHODS},
    "dt_minus_cql_delayed": lambda r: score(r, "delayed", "dt") - score(r, "delayed", "cql"),
    "cql_drop_minus_dt_drop": lambda r: drop(r, "cql") - drop(r, "dt"),
}


def metric_needs(name: str) -> list[tuple[str, str]]:
    """The (variant, method) return arrays a metric reads."""
    for m in METHODS:
        for v in VARIANTS:
            if name in (f"{m}_return_{v}", f"{m}_score_{v}"):
                return [(v, m)]
        if name in (f"{m}_kept", f"{m}_drop"):
            return [("original", m), ("delayed", m)]
    if name == "dt_minus_cql_delayed":
        return [("delayed", "dt"), ("delayed", "cql")]
    return [(v, m) for v in VARIANTS for m in METHODS]


# ---- measuring -------------------------------------------------------------------------------------------------
def measure(load: Callable[[str], object], datasets: Callable[[str], object], seed: int = 0,
            quick: bool = False) -> Finding:
    """load(recipe name) -> agent trained with this seed; datasets(DATA name) -> Dataset (for the data's returns).
    Evaluation resets seed + i; DTs at target 500, CQL greedy."""
    episodes = QUICK_EPISODES if quick else EVAL_EPISODES
    raw = {"returns": {v: {} for v in VARIANTS}, "max_return": MAX_RETURN}
    nums = {"env": "CartPole-v1", "variants": dict(VARIANTS), "episodes": episodes, "target_return": TARGET,
            "returns": {v: {} for v in VARIANTS}, "data": {}}
    missing = {}
    for v, name in DATA.items():
        ds = datasets(name)
        nums["data"][v] = {"dataset": name, "env_id": ds.env_id, "episodes": int(ds.n_episodes),
                           "return_mean": round(float(ds.episode_returns.mean()), 2),
                           "reward_steps": int(np.count_nonzero(ds.rewards))}
    for v, agents in AGENTS.items():
        for m, name in agents.items():
            agent, why = optional_agent(load, name)
            if agent is None:
                missing[(v, m)] = why
                continue
            r = _returns(agent, episodes, seed, TARGET)
            raw["returns"][v][m] = r
            ci = mean_ci(r, seed)
            nums["returns"][v][m] = {"agent": name, "env_id": agent.config.env_id, "mean": round(float(ci["mean"]), 1),
                                     "ci": [round(float(ci["ci_low"]), 1), round(float(ci["ci_high"]), 1)]}
    not_measured = {k: missing[need] for k in METRICS for need in metric_needs(k) if need in missing}
    measured = "; ".join(f"{v} data: " + ", ".join(f"{METHODS[m]} {x['mean']:g} {x['ci']}" for m, x in got.items())
                         for v, got in nums["returns"].items() if got) or "no agent measured"
    return Finding("delayed_reward", "Delayed reward: DT vs CQL with the return paid at the end (CartPole)",
                   "With every reward moved to the episode's last step, a Decision Transformer does about as well as on "
                   "the original rewards while TD learning (CQL) degrades (Chen et al. 2021, delayed-return "
                   "experiment).", measured, None, nums, {"delayed_reward": figure(nums)}, raw, not_measured, seed)


def figure(nums: dict) -> go.Figure:
    fig = go.Figure()
    for i, v in enumerate(VARIANTS):
        got = nums["returns"][v]
        ms = [m for m in METHODS if m in got]
        fig.add_bar(name=f"{v} data ({VARIANTS[v]})", x=[METHODS[m] for m in ms], y=[got[m]["mean"] for m in ms],
                    marker_color=F.PALETTE[i],
                    error_y=dict(type="data", symmetric=False, array=[got[m]["ci"][1] - got[m]["mean"] for m in ms],
                                 arrayminus=[got[m]["mean"] - got[m]["ci"][0] for m in ms]))
    fig.update_layout(template=F.TEMPLATE, height=400, barmode="group",
                      yaxis=dict(title="episode return (mean, 95% CI)", range=[0, MAX_RETURN * 1.05]),
                      title=f"CartPole: original vs delayed rewards ({nums['episodes']} episodes per agent)")
    return fig
