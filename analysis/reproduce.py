"""The papers' findings, measured on seqlens' agents: `cli.py reproduce` (report in analysis/report.py).

Four findings, each a Finding with its numbers (95% bootstrap CIs), the claim it tests, whether it
reproduced against a fixed target, and its figures. The metrics are small pure functions (tested on
synthetic inputs with known answers); the runs use the same analysis code as the dashboard.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import plotly.graph_objects as go
from scipy.stats import spearmanr

from models.evaluate import evaluate

from . import figures as F
from .stats import N_BOOT, mean_ci, ratio_ci, rowwise_bootstrap_ci


# ---- metrics --------------------------------------------------------------------------------------------
def spearman_in_range(targets, achieved, lo: float, hi: float) -> float:
    """Rank correlation of target vs mean achieved return over the targets inside [lo, hi]."""
    t, a = np.asarray(targets, float), np.asarray(achieved, float)
    inside = (t >= lo) & (t <= hi)
    if inside.sum() < 3:
        raise ValueError(f"need at least 3 targets inside the data's returns [{lo:g}, {hi:g}]; got {int(inside.sum())}.")
    return float(spearmanr(t[inside], a[inside]).statistic)


def spearman_ci(targets, returns: np.ndarray, lo: float, hi: float, seed: int = 0) -> tuple[float, float]:
    """Bootstrap over episodes (resampled within each target) of spearman_in_range. returns [T, E].
    Ties everywhere give no ordering: such a resample counts as 0."""
    return rowwise_bootstrap_ci(returns, lambda r: spearman_in_range(targets, r.mean(1), lo, hi),
                                n_boot=N_BOOT // 4, seed=seed, nan_as=0.0)


@dataclass
class Finding:
    id: str
    title: str
    claim: str
    measured: str
    reproduced: bool | None
    numbers: dict
    figures: dict[str, go.Figure] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"id": self.id, **self.numbers, "reproduced": self.reproduced}


def _r(x, d=3):
    return None if x is None else round(float(x), d)


# ---- 1. return conditioning ---------------------------------------------------------------------------------
def return_conditioning(agents: dict, episodes: int = 16, seed: int = 0, n_targets: int = 6) -> Finding:
    from .sweeps import default_targets, rtg_sweep

    rows, figs = [], {}
    for name, agent in agents.items():
        d = agent.config.dataset
        lo, hi = d["return_min"], d["return_max"]
        targets = default_targets(agent, n_targets)
        sw = rtg_sweep(agent, targets, episodes, seed)
        s = sw.summary()
        rho = spearman_in_range(targets, s["mean"], lo, hi)
        rlo, rhi = spearman_ci(targets, sw.returns, lo, hi, seed)
        rows.append({"agent": name, "spearman": _r(rho), "spearman_ci": [_r(rlo), _r(rhi)], "targets": targets,
                     "achieved": [_r(v, 1) for v in s["mean"]], "ci_low": [_r(v, 1) for v in s["ci_low"]],
                     "ci_high": [_r(v, 1) for v in s["ci_high"]], "episodes": episodes, "data_range": [_r(lo, 1), _r(hi, 1)]})
        figs[f"return_conditioning_{name}"] = F.sweep_returns(
            s, f"{name}: achieved vs target return ({sw.env_id}, {episodes} episodes per target)", (lo, hi))
    worst = min(r["spearman"] for r in rows)
    measured = "; ".join(f"{r['agent']} Spearman {r['spearman']:.2f} [{r['spearman_ci'][0]:.2f}, {r['spearman_ci'][1]:.2f}] "
                         f"over targets {r['targets'][0]:g}..{r['targets'][-1]:g} (achieved {r['achieved'][0]:g}..{r['achieved'][-1]:g})"
                         for r in rows)
    return Finding("return_conditioning", "Return conditioning (DT paper, Fig. 4)",
                   "A Decision Transformer's achieved return follows the return it is conditioned on across the "
                   "range of returns in its training data (Chen et al. 2021). Target: Spearman ≥ 0.9.",
                   measured, bool(worst >= 0.9), {"spearman": worst, "agents": rows}, figs)


# ---- 2. context vs the Markov assumption -------------------------------------------------------------------
def _returns(agent, episodes, seed, target):
    res = evaluate(agent, [target] if agent.kind == "dt" else None, episodes=episodes, seed=seed, progress=False)[0]
    return np.asarray(res["returns"], float)


def context_pomdp(agents: dict, episodes: int = 16, seed: int = 0, target: float = 500.0) -> Finding:
    """agents: {"k20": DT K=20, "k1": DT K=1, "gru": GRU, "mlp": MLP}, all on velocity-masked CartPole."""
    rets = {k: _returns(a, episodes, seed, target) for k, a in agents.items()}
    nums = {}
    for k, r in rets.items():
        m = mean_ci(r, seed)
        nums[f"{k}_return"] = _r(m["mean"], 1)
        nums[f"{k}_return_ci"] = [_r(m["ci_low"], 1), _r(m["ci_high"], 1)]
    ratio, lo, hi = ratio_ci(rets["k20"], rets["k1"], seed)
    nums.update(k20_over_k1=_r(ratio, 2), k20_over_k1_ci=[_r(lo, 2), _r(hi, 2)], episodes=episodes, target_return=target)
    names = {"k20": "DT, K = 20", "k1": "DT, K = 1", "gru": "GRU (whole history)", "mlp": "MLP (current observation)"}
    fig = go.Figure(go.Bar(x=[names[k] for k in rets], y=[nums[f"{k}_return"] for k in rets],
                           marker_color=[F.PALETTE[i] for i in range(len(rets))],
                           error_y=dict(type="data", symmetric=False,
                                        array=[nums[f"{k}_return_ci"][1] - nums[f"{k}_return"] for k in rets],
                                        arrayminus=[nums[f"{k}_return"] - nums[f"{k}_return_ci"][0] for k in rets])))
    fig.update_layout(template=F.TEMPLATE, height=400, yaxis_title="episode return (mean, 95% CI)",
                      title=f"Velocity-masked CartPole: memory vs the Markov assumption ({episodes} episodes each)")
    measured = (f"K=20 {nums['k20_return']:g} {nums['k20_return_ci']}, K=1 {nums['k1_return']:g} {nums['k1_return_ci']}, "
                f"GRU {nums['gru_return']:g} {nums['gru_return_ci']}, MLP {nums['mlp_return']:g} {nums['mlp_return_ci']}; "
                f"K=20 / K=1 = {nums['k20_over_k1']:g} {nums['k20_over_k1_ci']}")
    return Finding("context_pomdp", "Context vs the Markov assumption (velocity-masked CartPole)",
                   "With the velocities hidden the task is partially observed: an agent that sees history (a DT with "
                   "K=20, a GRU) should beat one that sees only the current observation (K=1, MLP). Target: K=20 earns "
                   "≥ 1.5× the return of K=1.", measured, bool(ratio >= 1.5), nums, {"context_pomdp": fig})


# ---- 3. Key-to-Door ---------------------------------------------------------------------------------------
def key_to_door(dt, mlp, dataset, episodes: int = 100, credit_episodes: int = 32, seed: int = 0) -> Finding:
    from .keydoor_credit import key_door_credit

    dt_s = mean_ci(_returns(dt, episodes, seed, 1.0) > 0.5, seed)
    mlp_s = mean_ci(_returns(mlp, episodes, seed, 1.0) > 0.5, seed)
    credit = {t: key_door_credit(dt, dataset, target=t, method="ig", at="phase3", max_episodes=credit_episodes, seed=seed)
              for t in ("value", "action")}
    value, action = mean_ci(credit["value"].share, seed), mean_ci(credit["action"].share, seed)
    rand = mean_ci(credit["value"].randomized_share, seed)
    nums = {"key_share_over_uniform": _r(value["mean"], 2), "key_share_ci": [_r(value["ci_low"], 2), _r(value["ci_high"], 2)],
            "action_key_share_over_uniform": _r(action["mean"], 2),
            "action_key_share_ci": [_r(action["ci_low"], 2), _r(action["ci_high"], 2)],
            "random_model_key_share_over_uniform": _r(rand["mean"], 2),
            "random_model_key_share_ci": [_r(rand["ci_low"], 2), _r(rand["ci_high"], 2)],
            "dt_success": _r(dt_s["mean"], 3), "dt_success_ci": [_r(dt_s["ci_low"], 3), _r(dt_s["ci_high"], 3)],
            "mlp_success": _r(mlp_s["mean"], 3), "mlp_success_ci": [_r(mlp_s["ci_low"], 3), _r(mlp_s["ci_high"], 3)],
            "episodes": episodes, "credit_episodes": int(value["n"]),
            "return_prediction": "value head: the return predicted from the history with every return-to-go token hidden"}
    fig = F.key_door_credit_bars({t: c.to_frame() for t, c in credit.items()})
    ok = nums["key_share_over_uniform"] >= 3 and value["ci_low"] > rand["ci_high"]
    measured = (f"success DT {nums['dt_success']:.0%} vs MLP {nums['mlp_success']:.0%}; credit on the key step over uniform "
                f"(IG at the first phase-3 step, {nums['credit_episodes']} episodes): return prediction "
                f"{nums['key_share_over_uniform']:g} {nums['key_share_ci']}, action {nums['action_key_share_over_uniform']:g} "
                f"{nums['action_key_share_ci']}, randomized model {nums['random_model_key_share_over_uniform']:g} "
                f"{nums['random_model_key_share_ci']}")
    if not ok:
        measured += ("; " + ("the return prediction credits the key step more than a re-initialised model does, but not "
                             "3x uniform" if value["ci_low"] > rand["ci_high"] else
                             "the credit cannot be told apart from a re-initialised model's"))
    return Finding("key_to_door", "Key-to-Door: memory and where the credit goes",
                   "A sequence model can carry the key from phase 1 to the door in phase 3 where a Markov policy "
                   "cannot; what predicts success should give the key-pickup step credit. Target: return-prediction "
                   "credit on the key ≥ 3× uniform and above a re-initialised model's.",
                   measured, bool(ok), nums, {"key_to_door_credit": fig})


# ---- 4. compounding error ---------------------------------------------------------------------------------
def compounding_error(pairs: dict, horizon: int = 10, n_starts: int = 256, seed: int = 0) -> Finding:
    """pairs: {"full": (tt, dynamics, dataset), "masked": (...)}."""
    from .predictions import error_by_horizon

    nums, figs = {}, {}
    for key, (tt, dyn, ds) in pairs.items():
        e_tt = error_by_horizon(tt, ds, 20, n_starts, seed, name="Trajectory Transformer")
        e_dyn = error_by_horizon(dyn, ds, 20, n_starts, seed, name="one-step MLP dynamics")
        i = horizon - 1
        nums[key] = {"horizon": horizon, "sequence_model_error": _r(e_tt.mean_l2[i], 4),
                     "sequence_model_error_ci": [_r(e_tt.ci_low[i], 4), _r(e_tt.ci_high[i], 4)],
                     "single_step_error": _r(e_dyn.mean_l2[i], 4),
                     "single_step_error_ci": [_r(e_dyn.ci_low[i], 4), _r(e_dyn.ci_high[i], 4)],
                     "quantization_floor": _r(e_tt.obs_quantization_floor, 4), "n_starts": n_starts}
        figs[f"compounding_error_{key}"] = F.error_vs_horizon([e_tt, e_dyn], f"Open-loop error by horizon — {ds.source}")
    m, f = nums["masked"], nums["full"]
    measured = (f"H={horizon}: masked Pendulum TT {m['sequence_model_error']:g} {m['sequence_model_error_ci']} vs one-step "
                f"{m['single_step_error']:g} {m['single_step_error_ci']}; full Pendulum TT {f['sequence_model_error']:g} vs "
                f"one-step {f['single_step_error']:g} (TT floors {m['quantization_floor']:g} / {f['quantization_floor']:g})")
    ok = m["sequence_model_error_ci"][1] < m["single_step_error_ci"][0]
    return Finding("compounding_error", "Compounding error: memory vs a one-step model",
                   "Open-loop under the logged actions, a one-step model compounds its errors; a sequence model "
                   "conditions on the history. On a fully observed smooth system the one-step model should do well; "
                   "with the angular velocity hidden it cannot know it and a history-conditioned model should win. "
                   "Target: on masked Pendulum, sequence-model error < single-step error at H=10 (full: reported).",
                   measured, bool(ok), nums, figs)


# ---- all four ------------------------------------------------------------------------------------------------
# Every agent run_all asks load() for (shipped, or retrained from models/recipes.py): `cli.py reproduce --env
# AGENT=ID` may name only these.
AGENTS = ("cartpole-dt", "pendulum-dt", "masked-cartpole-dt-k20", "masked-cartpole-dt-k1", "masked-cartpole-gru",
          "keydoor-dt", "keydoor-mlp", "pendulum-tt", "pendulum-dynamics", "masked-pendulum-tt",
          "masked-pendulum-dynamics")


def run_all(load: Callable[[str], object], datasets: Callable[[str], object], seed: int = 0, quick: bool = False,
            log: Callable[[str], None] = print) -> list[Finding]:
    """load(name) -> agent (shipped or retrained), datasets(name) -> Dataset. quick shrinks episode counts."""
    from .context import train_mlp_reference

    eps = 4 if quick else 16
    out = []
    log("return conditioning: cartpole-dt, pendulum-dt")
    out.append(return_conditioning({n: load(n) for n in ("cartpole-dt", "pendulum-dt")}, eps, seed, 4 if quick else 6))
    log("context vs Markov: masked CartPole")
    mlp = train_mlp_reference(datasets("masked-cartpole"), steps=300 if quick else 2000, seed=seed)
    out.append(context_pomdp({"k20": load("masked-cartpole-dt-k20"), "k1": load("masked-cartpole-dt-k1"),
                              "gru": load("masked-cartpole-gru"), "mlp": mlp}, eps, seed))
    log("Key-to-Door: success and credit")
    out.append(key_to_door(load("keydoor-dt"), load("keydoor-mlp"), datasets("keydoor"), 20 if quick else 100,
                           4 if quick else 32, seed))
    log("compounding error: Pendulum and masked Pendulum")
    out.append(compounding_error({"full": (load("pendulum-tt"), load("pendulum-dynamics"), datasets("pendulum")),
                                  "masked": (load("masked-pendulum-tt"), load("masked-pendulum-dynamics"), datasets("masked-pendulum"))},
                                 n_starts=64 if quick else 256, seed=seed))
    return out
