"""Key-to-Door as the DT paper ran it (issue 24, item 3): agents trained on uniformly random episodes, 1K and 10K of
them, success of DT, BC, %BC and CQL beside the paper's Table 6; and the cue variant (seqlens/KeyToDoorCue-v0), where
the paying door is told only in phase 1, so memory is needed to act: DT with the whole episode as context vs K=1 vs
CQL (a Markov Q-network).

`measure(load, datasets, seed, quick) -> Finding` (unconcluded: findings.toml's entry decides what is pooled and
how); `METRICS`: pure functions of one seed's raw values.

raw per seed: {"success": {"1k" | "10k": {"dt" | "bc" | "pbc" | "cql": 0/1 per evaluation episode}},
"cue": {"full" | "k1" | "cql": 0/1 per episode}, "data_success": {"1k" | "10k" | "cue": the behaviour data's
success rate}}. An agent load() cannot give (not trained; CQL where models/value_agents.py is missing) leaves its
array out and its metrics in not_measured.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import plotly.graph_objects as go

from analysis.core.stats import mean_ci
from analysis.publish import figures as F
from analysis.research.papers import DT_KEYDOOR, DT_PAPER
from analysis.research.reproduce import Finding, _returns, optional_agent

SIZES = {"1k": 1000, "10k": 10000}
METHODS = {"dt": "DT", "bc": "BC", "pbc": "%BC", "cql": "CQL"}
# recipes (models/recipes.py FINDING_AGENTS) per data size and method; the cue variant's
AGENTS = {size: {m: f"keydoor-random-{size}-{m}" for m in METHODS} for size in SIZES}
CUE_AGENTS = {"full": "keydoor-cue-dt", "k1": "keydoor-cue-dt-k1", "cql": "keydoor-cue-cql"}
CUE_NAMES = {"full": "DT, K = 25 (whole episode)", "k1": "DT, K = 1", "cql": "CQL"}
DATA = {"1k": "keydoor-random-1k", "10k": "keydoor-random-10k", "cue": "keydoor-cue-random-10k"}
PAPER_KEYS = {"1k": "1K random trajectories", "10k": "10K random trajectories"}
EVAL_EPISODES, QUICK_EPISODES = 100, 8


# ---- metrics: pure functions of one seed's raw values ------------------------------------------------------------
def success(raw: dict, size: str, method: str) -> float:
    """Share of evaluation episodes that reached the door with the key."""
    return float(np.mean(raw["success"][size][method]))


def success_gap(raw: dict, size: str, a: str, b: str) -> float:
    """Success of method a minus method b on the same data size (independent episodes)."""
    return success(raw, size, a) - success(raw, size, b)


def cue_success(raw: dict, agent: str) -> float:
    return float(np.mean(raw["cue"][agent]))


def cue_k1_over_full(raw: dict) -> float:
    """K=1 success / whole-context success on the cue variant: ~0.5 when K=1 reaches a door with the key as
    reliably but cannot tell which door pays; NaN when the whole-context DT never succeeds."""
    full = cue_success(raw, "full")
    return cue_success(raw, "k1") / full if full else float("nan")


TITLE = "Key-to-Door as the DT paper ran it: DT vs BC vs %BC vs CQL on uniformly random data"
SETTING = "POMDP (Key-to-Door), uniformly random behaviour data at 1K and 10K episodes; a cue variant (two doors)"
PAPER_VALUE = {"value": None, "where": "Chen et al. 2021, Table 6",
               "reason": "one number per agent and data size (DT 0.718 / 0.946, CQL 0.131 / 0.133, BC 0.014 / 0.016, "
                         "%BC 0.699 / 0.951 at 1K / 10K): printed beside each metric (papers rows)"}

METRICS: dict[str, Callable[[dict], float]] = {
    **{f"{m}_success_{s}": (lambda r, s=s, m=m: success(r, s, m)) for s in SIZES for m in METHODS},
    **{f"dt_minus_{m}_{s}": (lambda r, s=s, m=m: success_gap(r, s, "dt", m)) for s in SIZES for m in ("bc", "pbc", "cql")},
    **{f"cue_{a}_success": (lambda r, a=a: cue_success(r, a)) for a in CUE_AGENTS},
    "cue_full_minus_k1": lambda r: cue_success(r, "full") - cue_success(r, "k1"),
    "cue_k1_over_full": cue_k1_over_full,
    **{f"data_success_{k}": (lambda r, k=k: float(r["data_success"][k])) for k in DATA},
}


def metric_needs(name: str) -> list[tuple]:
    """The (section, key[, key]) raw entries a metric reads: what not_measured is keyed on."""
    for s in SIZES:
        for m in METHODS:
            if name == f"{m}_success_{s}":
                return [("success", s, m)]
            if name == f"dt_minus_{m}_{s}":
                return [("success", s, "dt"), ("success", s, m)]
    for a in CUE_AGENTS:
        if name == f"cue_{a}_success":
            return [("cue", a)]
    if name in ("cue_full_minus_k1", "cue_k1_over_full"):
        return [("cue", "full"), ("cue", "k1")]
    return [("data_success", name.removeprefix("data_success_"))]


# ---- measuring ------------------------------------------------------------------------------------------------
def _episodes(name: str, quick: bool) -> int:
    from models.recipes import all_recipes

    n = all_recipes().get(name, {}).get("episodes", EVAL_EPISODES)
    return min(n, QUICK_EPISODES) if quick else n


def _success(agent, episodes: int, seed: int) -> np.ndarray:
    """0/1 per episode (return 1 at target 1 for return-conditioned agents; greedy otherwise)."""
    return (_returns(agent, episodes, seed, 1.0) > 0.5).astype(float)


def _ci(x, seed) -> dict:
    m = mean_ci(x, seed)
    return {"success": round(float(m["mean"]), 3), "ci": [round(float(m["ci_low"]), 3), round(float(m["ci_high"]), 3)],
            "episodes": int(len(x))}


def measure(load: Callable[[str], object], datasets: Callable[[str], object], seed: int = 0,
            quick: bool = False) -> Finding:
    """load(recipe name) -> agent trained with this seed; datasets(DATA name) -> the behaviour Dataset. Evaluation
    resets: seed + i (as the other findings), the agents' target return 1."""
    raw = {"success": {s: {} for s in SIZES}, "cue": {}, "data_success": {}}
    missing, nums = {}, {"behaviour": "uniform random", "n_episodes": list(SIZES.values()), "success": {}, "cue": {},
                         "paper": {"source": f"{DT_PAPER}, Table 6", **DT_KEYDOOR}}
    for key, name in DATA.items():
        ds = datasets(name)
        raw["data_success"][key] = float(np.mean(ds.episode_returns > 0))
        nums.setdefault("data", {})[key] = {"dataset": name, "episodes": int(ds.n_episodes),
                                            "success": round(raw["data_success"][key], 4),
                                            "policy": (ds.metadata or {}).get("policy")}
    for size, agents in AGENTS.items():
        for method, name in agents.items():
            agent, why = optional_agent(load, name)
            if agent is None:
                missing[("success", size, method)] = why
                continue
            raw["success"][size][method] = _success(agent, _episodes(name, quick), seed)
            nums["success"].setdefault(size, {})[method] = {"agent": name, **_ci(raw["success"][size][method], seed)}
    for key, name in CUE_AGENTS.items():
        agent, why = optional_agent(load, name)
        if agent is None:
            missing[("cue", key)] = why
            continue
        raw["cue"][key] = _success(agent, _episodes(name, quick), seed)
        nums["cue"][key] = {"agent": name, **_ci(raw["cue"][key], seed)}
    not_measured = {m: missing[need] for m in METRICS for need in metric_needs(m) if need in missing}
    nums["episodes"] = QUICK_EPISODES if quick else EVAL_EPISODES
    return Finding("key_to_door_paper", "Key-to-Door as the DT paper ran it (uniformly random data, 1K and 10K episodes)",
                   "Trained on uniformly random episodes, DT and %BC reach the door with the key far more often than BC "
                   "and CQL (Chen et al. 2021, Table 6: DT 0.718 / 0.946, %BC 0.699 / 0.951, BC 0.014 / 0.016, CQL "
                   "0.131 / 0.133 at 1K / 10K); where the paying door is cued only in phase 1, an agent without memory "
                   "(K = 1) picks the door by chance.",
                   _measured(nums), None, nums, {"key_to_door_paper": figure(nums), "key_to_door_cue": cue_figure(nums)},
                   raw, not_measured, seed)


def _measured(nums: dict) -> str:
    parts = []
    for size in SIZES:
        got = nums["success"].get(size, {})
        if got:
            parts.append(f"{size.upper()} random episodes: " + ", ".join(
                f"{METHODS[m]} {v['success']:.2f} [{v['ci'][0]:.2f}, {v['ci'][1]:.2f}]" for m, v in got.items()))
    if nums["cue"]:
        parts.append("cue variant: " + ", ".join(f"{CUE_NAMES[k]} {v['success']:.2f} [{v['ci'][0]:.2f}, {v['ci'][1]:.2f}]"
                                                 for k, v in nums["cue"].items()))
    data = nums.get("data", {})
    if data:
        parts.append("behaviour data success " + ", ".join(f"{k} {v['success']:.3f}" for k, v in data.items()))
    return "; ".join(parts) or "no agent measured"


def figure(nums: dict) -> go.Figure:
    """Success per method, grouped by data size, with 95% CIs; the paper's Table 6 values as markers."""
    fig = go.Figure()
    for i, size in enumerate(SIZES):
        got = nums["success"].get(size, {})
        methods = [m for m in METHODS if m in got]
        fig.add_bar(name=f"ours, {size.upper()} episodes", x=[METHODS[m] for m in methods],
                    y=[got[m]["success"] for m in methods], marker_color=F.PALETTE[i],
                    error_y=dict(type="data", symmetric=False, array=[got[m]["ci"][1] - got[m]["success"] for m in methods],
                                 arrayminus=[got[m]["success"] - got[m]["ci"][0] for m in methods]))
        paper = DT_KEYDOOR[PAPER_KEYS[size]]
        fig.add_scatter(name=f"paper, {size.upper()}", x=list(METHODS.values()), y=[paper[METHODS[m]] for m in METHODS],
                        mode="markers", marker=dict(symbol="diamond", size=11, color=F.PALETTE[i],
                                                    line=dict(width=1.5, color="black")))
    fig.update_layout(template=F.TEMPLATE, height=420, barmode="group", yaxis=dict(title="success rate (95% CI)",
                      range=[0, 1.05]), title="Key-to-Door on uniformly random data: ours (bars) and the DT paper's "
                      "Table 6 (diamonds)")
    return fig


def cue_figure(nums: dict) -> go.Figure:
    got = nums["cue"]
    keys = [k for k in CUE_AGENTS if k in got]
    fig = go.Figure(go.Bar(x=[CUE_NAMES[k] for k in keys], y=[got[k]["success"] for k in keys],
                           marker_color=[F.PALETTE[i] for i in range(len(keys))],
                           error_y=dict(type="data", symmetric=False, array=[got[k]["ci"][1] - got[k]["success"] for k in keys],
                                        arrayminus=[got[k]["success"] - got[k]["ci"][0] for k in keys])))
    fig.update_layout(template=F.TEMPLATE, height=400, yaxis=dict(title="success rate (95% CI)", range=[0, 1.05]),
                      title="Key-to-Door with a phase-1 cue: which door pays is seen only in phase 1")
    return fig
