"""The papers' findings, measured on seqlens' agents: `cli.py reproduce` (report in analysis/research/report.py).

The findings pre-registered in findings.toml (claim, metric, split, target, verdict rule; analysis/research/findings.py
reads it). Each run measures every finding on one training seed: a Finding with its numbers, its figures and the
raw values its metrics read (`raw`: per-episode / per-pair / per-start arrays, written to a seed file). The metrics
(METRICS: small pure functions of one seed's raw values, tested on synthetic inputs with known answers) are then
pooled across seeds (`pool_runs`: the mean of the per-seed metric with a stratified bootstrap CI) and the verdict
is the finding's rule on the pooled values. A metric that needs an agent nobody has trained yet is "not measured",
and so is a verdict whose rule reads it. The runs use the same analysis code as the dashboard.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np
import plotly.graph_objects as go
from scipy.stats import spearmanr

from models.shipped import AGENT_DIR

from analysis.behaviour.evaluate import evaluate

from analysis.publish import figures as F
from analysis.interp.keydoor_credit import restored
from analysis.research.findings import FindingsError, PreRegistered, Registry, conclude, load_findings
from analysis.research.papers import paper_rows
from analysis.core.stats import N_BOOT, mean_ci, ratio_ci, rowwise_bootstrap_ci


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
    """One finding measured on one seed (numbers, figures and the raw values its metrics read), then concluded:
    its metrics pooled across the seeds given (`conclude_finding`) and the verdict of its pre-registered rule."""

    id: str
    title: str
    claim: str
    measured: str
    reproduced: bool | None
    numbers: dict
    figures: dict[str, go.Figure] = field(default_factory=dict)
    raw: dict = field(default_factory=dict)              # this seed's values the metrics read (written to seed files)
    not_measured: dict = field(default_factory=dict)     # this seed: metric -> why it could not be measured
    seed: int = 0                                        # the training seed these numbers come from
    spec: PreRegistered | None = None                    # findings.toml's entry
    pooled: dict = field(default_factory=dict)           # metric -> {estimate, ci_low, ci_high, n_seeds, per_seed}
    missing: dict = field(default_factory=dict)          # metric -> why no seed measured it
    comparisons: list = field(default_factory=list)      # the rule, evaluated
    verdict: str = ""                                    # "reproduced" | "not reproduced" | "not measured: ..."
    flags: dict = field(default_factory=dict)            # compounding_error: held_out, paired

    def to_json(self) -> dict:
        out = {"id": self.id, **self.numbers, "reproduced": self.reproduced}
        if self.spec is None:
            return out
        s, head = self.spec, self.pooled.get(self.spec.metric)
        extra = {"title": self.title, "paper": s.paper, "claim": s.claim, "finding_agents": list(s.agents), "split": s.split, "metric": s.metric,
                 "target": s.target, "rule": s.rule.text, "verdict": self.verdict, "comparisons": self.comparisons,
                 "n_seeds": head["n_seeds"] if head else 0, "per_seed": _per_seed(head) if head else {},
                 "estimate": head["estimate"] if head else None, "ci_low": head["ci_low"] if head else None,
                 "ci_high": head["ci_high"] if head else None,
                 "secondary": {m: _pooled_json(self.pooled.get(m)) for m in s.secondary},
                 "also_measured": {m: _pooled_json(p) for m, p in self.pooled.items() if m not in s.metrics},
                 "not_measured": dict(self.missing), "papers": paper_rows(self), **self.flags,
                 **_registered_fields(self, head)}
        if self.id == "key_to_door":
            extra["patching"] = {k: _pooled_json(self.pooled.get(m)) for k, m in (
                ("span_effect", "patching_span_effect"), ("distractor_effect", "patching_distractor_effect"),
                ("span_minus_distractor", "span_minus_distractor"))} | PATCHING_DESIGN
        clash = set(out) & set(extra)
        assert not clash, f"finding numbers and pooled fields share names: {clash}"
        return {**out, **extra, "reproduced": self.reproduced}


def _registered_fields(f: Finding, head: dict | None) -> dict:
    """findings.json's setting, paper_value, interval and registration of a concluded finding."""
    from analysis.research.findings import INTERVAL_TEXT
    from analysis.research.registration import finding_registration

    reg = registry()
    mod = finding_module(f.id)
    method = (head or {}).get("interval") or ("within_seed" if head and head["n_seeds"] == 1 else reg.interval)
    return {"setting": mod.setting, "paper_value": dict(mod.paper_value),
            "interval": {"method": method, "text": INTERVAL_TEXT[method], "level": reg.level,
                         "n_seeds": head["n_seeds"] if head else 0},
            "registration": finding_registration(reg, f.id, checkout_hashes(reg))}


_HASHES: dict = {}


def checkout_hashes(reg: Registry | None = None) -> dict:
    """This checkout's code and recipe hashes of reg's findings (registration.current_hashes over each finding
    module's files), once per process and findings file."""
    from analysis.research.registration import current_hashes

    reg = reg or registry()
    if reg.path not in _HASHES:
        _HASHES[reg.path] = current_hashes(reg, {f.id: finding_module(f.id).files for f in reg.findings})
    return _HASHES[reg.path]


def _per_seed(p: dict) -> dict:
    return {str(k): v for k, v in p["per_seed"].items()}


def _pooled_json(p: dict | None) -> dict | None:
    return None if p is None else {**p, "per_seed": _per_seed(p)}


def _r(x, d=3):
    return None if x is None else round(float(x), d)


_REGISTRY: list = []


def registry() -> Registry:
    """findings.toml, read once."""
    if not _REGISTRY:
        _REGISTRY.append(load_findings())
    return _REGISTRY[0]


def conclude_finding(f: Finding, per_seed: dict[int, dict] | None = None, not_measured: dict[int, dict] | None = None,
                     seed: int = 0, reg: Registry | None = None) -> Finding:
    """f with its metrics pooled over per_seed ({seed: raw}; default: f's own seed alone) and its verdict by the
    rule findings.toml gives it."""
    reg = reg or registry()
    spec = reg.get(f.id)
    per_seed = per_seed if per_seed is not None else {f.seed: f.raw}
    not_measured = not_measured if not_measured is not None else {f.seed: f.not_measured}
    res = conclude(spec, per_seed, finding_metrics(f.id, per_seed), not_measured, seed=seed,
                   n_boot=finding_module(f.id).n_boot, level=reg.level, interval=reg.interval)
    f.spec, f.pooled, f.missing, f.reproduced, f.comparisons, f.verdict = (
        spec, res.pooled, res.not_measured, res.reproduced, res.comparisons, res.verdict)
    return f


def pool_runs(findings: list[Finding], others: dict[int, dict] | None = None, seed: int = 0) -> list[Finding]:
    """Copies of the findings of one measured run (its seed) pooled with the seeds of `others` ({seed: a seed file
    as analysis.research.findings.read_seed_file gives it, or {"findings": seed_results(run)}}); a finding a seed file lacks
    is pooled without that seed. The run's own findings stay concluded on their seed alone."""
    others = others or {}
    known = {s.id for s in registry().findings}
    findings = [replace(f) for f in findings]
    for f in findings:
        if f.id not in known:   # not a pre-registered finding: reported as it is
            continue
        raw, nm = {f.seed: f.raw}, {f.seed: f.not_measured}
        for k, doc in sorted(others.items()):
            if k == f.seed or f.id not in doc["findings"]:
                continue
            raw[k], nm[k] = doc["findings"][f.id]["raw"], doc["findings"][f.id]["not_measured"]
        conclude_finding(f, raw, nm, seed)
    return findings


def seed_results(findings: list[Finding]) -> dict:
    """{finding id: {raw, not_measured, numbers}} of one seed's run, for analysis.research.findings.write_seed_file."""
    return {f.id: {"raw": f.raw, "not_measured": f.not_measured, "numbers": f.numbers} for f in findings}


# ---- 1. return conditioning ---------------------------------------------------------------------------------
# raw per seed: {agent: {"targets": [T], "range": [lo, hi], "returns": [T arrays of episode returns]}}; each
# target's episodes are a stratum of their own (resampled within the target).
def _conditioning(a: dict) -> tuple[np.ndarray, np.ndarray, float]:
    """(in-range targets, their mean achieved returns, the data's return range width) of one agent."""
    t = np.asarray(a["targets"], float)
    lo, hi = a["range"]
    achieved = np.array([np.mean(r) for r in a["returns"]])
    inside = (t >= lo) & (t <= hi)
    return t[inside], achieved[inside], float(hi - lo)


def agent_spearman(a: dict) -> float:
    """Rank correlation of target vs mean achieved over in-range targets (all tied: 0, no ordering)."""
    t, m, _ = _conditioning(a)
    lo, hi = a["range"]
    if len(t) >= 3 and np.ptp(m) == 0:
        return 0.0
    rho = spearman_in_range(t, m, lo, hi)
    return 0.0 if np.isnan(rho) else rho


def agent_slope(a: dict) -> float:
    """Least-squares slope of mean achieved return on target over in-range targets (1: follows one for one)."""
    t, m, _ = _conditioning(a)
    return float(np.polyfit(t, m, 1)[0])


def agent_calibration_mae(a: dict) -> float:
    """Mean |achieved - target| over in-range targets, as a share of the training data's return range."""
    t, m, width = _conditioning(a)
    return float(np.mean(np.abs(m - t)) / width)


def agent_beyond_gain(a: dict) -> float:
    """What the agent does above the data's best return: mean achieved over the targets beyond it ("upper") minus
    the mean achieved at the highest in-range target, as a share of the data's return range (0: it stays where the
    data's best took it; 0.25 at a target a quarter range above: it follows)."""
    t, m, width = _conditioning(a)
    beyond = np.mean([np.mean(r) for r in a["upper"]["returns"]])
    return float((beyond - m[np.argmax(t)]) / width)


def agent_beyond_slope(a: dict) -> float:
    """Achieved over target above the data's best: the least-squares slope of mean achieved on target over the
    highest in-range target and the beyond targets (1: follows one for one; 0: saturates)."""
    t, m, _ = _conditioning(a)
    tb = np.asarray(a["upper"]["targets"], float)
    mb = np.array([np.mean(r) for r in a["upper"]["returns"]])
    return float(np.polyfit(np.r_[t[np.argmax(t)], tb], np.r_[m[np.argmax(t)], mb], 1)[0])


def conditioning_spearman(raw: dict) -> float:
    """The worst agent's Spearman."""
    return min(agent_spearman(a) for a in raw.values())


def conditioning_slope(raw: dict) -> float:
    """The agent slope farthest from 1: inside [0.5, 1.5] exactly when every agent's is."""
    slopes = [agent_slope(a) for a in raw.values()]
    return max(slopes, key=lambda v: abs(v - 1.0))


def conditioning_calibration_mae(raw: dict) -> float:
    """The worst agent's calibration error."""
    return max(agent_calibration_mae(a) for a in raw.values())


def return_conditioning(agents: dict, episodes: int = 16, seed: int = 0, n_targets: int = 6, beyond=()) -> Finding:
    """Reset seeds 1000 + seed (the pre-registered split: never the training data's). beyond: targets above the
    data's best, as multiples x of its return range (target return_min + x (return_max - return_min), e.g. 1.25,
    1.5), swept separately (reset seeds after the in-range ones, so the in-range sweep is unchanged) and kept out of
    the in-range metrics: raw[agent]["upper"], metrics beyond_gain and beyond_slope."""
    from analysis.behaviour.sweeps import default_targets, rtg_sweep

    rows, figs, raw = [], {}, {}
    env_seed = 1000 + seed
    for name, agent in agents.items():
        d = agent.config.dataset
        lo, hi = d["return_min"], d["return_max"]
        targets = default_targets(agent, n_targets)
        sw = rtg_sweep(agent, targets, episodes, env_seed)
        s = sw.summary()
        rho = spearman_in_range(targets, s["mean"], lo, hi)
        rlo, rhi = spearman_ci(targets, sw.returns, lo, hi, env_seed)
        raw[name] = {"targets": [float(t) for t in targets], "range": [float(lo), float(hi)],
                     "returns": [np.asarray(r, float) for r in sw.returns]}
        extra = {}
        if beyond:
            tb = [round(float(lo + x * (hi - lo)), 1) for x in beyond]
            swb = rtg_sweep(agent, tb, episodes, env_seed + len(targets) * episodes)
            sb = swb.summary()
            raw[name]["upper"] = {"targets": tb, "returns": [np.asarray(r, float) for r in swb.returns]}
            extra = {"beyond": {"targets": tb, "achieved": [_r(v, 1) for v in sb["mean"]],
                                "ci_low": [_r(v, 1) for v in sb["ci_low"]], "ci_high": [_r(v, 1) for v in sb["ci_high"]],
                                "gain": _r(agent_beyond_gain(raw[name])), "slope": _r(agent_beyond_slope(raw[name]))}}
        rows.append({"agent": name, "spearman": _r(rho), "spearman_ci": [_r(rlo), _r(rhi)], "targets": targets, **extra,
                     "achieved": [_r(v, 1) for v in s["mean"]], "ci_low": [_r(v, 1) for v in s["ci_low"]],
                     "ci_high": [_r(v, 1) for v in s["ci_high"]], "episodes": episodes, "data_range": [_r(lo, 1), _r(hi, 1)],
                     "slope": _r(agent_slope(raw[name])), "calibration_mae": _r(agent_calibration_mae(raw[name]))})
        figs[f"return_conditioning_{name}"] = F.sweep_returns(
            s, f"{name}: achieved vs target return ({sw.env_id}, {episodes} episodes per target)", (lo, hi))
    worst = min(r["spearman"] for r in rows)
    above = "; ".join(f"{r['agent']} beyond the data's best: targets {r['beyond']['targets']} achieved "
                      f"{r['beyond']['achieved']} (gain over the best in-range target {r['beyond']['gain']:g} of the range, "
                      f"slope {r['beyond']['slope']:g})" for r in rows if "beyond" in r)
    measured = "; ".join(f"{r['agent']} Spearman {r['spearman']:.2f} [{r['spearman_ci'][0]:.2f}, {r['spearman_ci'][1]:.2f}], "
                         f"slope {r['slope']:.2f}, calibration error {r['calibration_mae']:.2f} of the data's range "
                         f"over targets {r['targets'][0]:g}..{r['targets'][-1]:g} (achieved {r['achieved'][0]:g}..{r['achieved'][-1]:g})"
                         for r in rows) + (f". {above}" if above else "")
    f = Finding("return_conditioning", "Return conditioning (DT paper, Fig. 4)",
                "A Decision Transformer's achieved return follows the return it is conditioned on across the "
                "range of returns in its training data (Chen et al. 2021).",
                measured, None, {"spearman": worst, "agents": rows}, figs, raw, {}, seed)
    return conclude_finding(f)


# ---- 2. context vs the Markov assumption -------------------------------------------------------------------
# raw per seed: {"k20": returns, "k1": returns, "gru": returns, "mlp": returns} (episodes; agents independent)
def _returns(agent, episodes, seed, target):
    res = evaluate(agent, [target] if agent.has("return_conditioned") else None, episodes=episodes, seed=seed, progress=False)[0]
    return np.asarray(res["returns"], float)


def _ratio(a, b) -> float:
    b = float(np.mean(b))
    return float(np.mean(a)) / b if b else float("nan")


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
    f = Finding("context_pomdp", "Context vs the Markov assumption (velocity-masked CartPole)",
                "With the velocities hidden the task is partially observed: an agent that sees history (a DT with "
                "K=20, a GRU) should beat one that sees only the current observation (K=1, MLP).", measured, None,
                nums, {"context_pomdp": fig}, {k: np.asarray(r, float) for k, r in rets.items()}, {}, seed)
    return conclude_finding(f)


# ---- 3. Key-to-Door ---------------------------------------------------------------------------------------
# raw per seed: {"success": {"dt", "mlp"[, "k1"]: 0/1 per episode}, "patching": [pairs, 4] value head (raw units) at
# the first phase-3 step: clean (key taken), corrupted (no key), corrupted with the post-pickup span patched from
# clean, corrupted with the distractor steps patched (pairs resampled whole), "ig": {per explained episode: span
# share, |delta|, trained-vs-randomized map correlation, key-step ratio, the randomized model's key-step ratio},
# "ig_action": {"key_ratio"}}
PATCHING_DESIGN = {
    "activation": "blocks.0.resid_pre",
    "output": "value head (every return-to-go hidden), raw return units, at the clean episode's first phase-3 step",
    "span": "the post-pickup span: the key-pickup step through the last phase-1 step (R, s and a tokens)",
    "distractor": "the phase-2 (distractor) steps (R, s and a tokens)",
    "effect": "sum over pairs of (patched - corrupted) / sum of (clean - corrupted): the share of the value "
              "difference the patch restores"}


def key_door_patching(agent, dataset, max_pairs: int = 32) -> tuple[np.ndarray, int]:
    """[pairs, 4] (clean, corrupted, span patched, distractor patched) value-head readings, and how many pairs were
    left out because clean and corrupted gave the same value: the Credit page's key_span_patching for the value
    (pairs, patch and readout are defined there once)."""
    from analysis.interp.keydoor_credit import key_span_patching

    return key_span_patching(agent, dataset, "value", max_pairs)


def key_to_door(dt, mlp, dataset, episodes: int = 100, credit_episodes: int = 32, seed: int = 0, k1=None,
                missing: dict | None = None) -> Finding:
    """k1: the return-conditioned K=1 DT (None: not trained; `missing` says why, {agent: reason})."""
    from analysis.interp.keydoor_credit import key_door_credit

    missing = missing or {}
    success = {"dt": (_returns(dt, episodes, seed, 1.0) > 0.5).astype(float),
               "mlp": (_returns(mlp, episodes, seed, 1.0) > 0.5).astype(float)}
    if k1 is not None:
        success["k1"] = (_returns(k1, episodes, seed, 1.0) > 0.5).astype(float)
    dt_s, mlp_s = mean_ci(success["dt"], seed), mean_ci(success["mlp"], seed)
    credit = {t: key_door_credit(dt, dataset, target=t, method="ig", at="phase3", max_episodes=credit_episodes, seed=seed)
              for t in ("value", "action")}
    v = credit["value"]
    value, action = mean_ci(v.share, seed), mean_ci(credit["action"].share, seed)
    rand = mean_ci(v.randomized_share, seed)
    patching, skipped = key_door_patching(dt, dataset, credit_episodes)
    nums = {"key_share_over_uniform": _r(value["mean"], 2), "key_share_ci": [_r(value["ci_low"], 2), _r(value["ci_high"], 2)],
            "action_key_share_over_uniform": _r(action["mean"], 2),
            "action_key_share_ci": [_r(action["ci_low"], 2), _r(action["ci_high"], 2)],
            "random_model_key_share_over_uniform": _r(rand["mean"], 2),
            "random_model_key_share_ci": [_r(rand["ci_low"], 2), _r(rand["ci_high"], 2)],
            "dt_success": _r(dt_s["mean"], 3), "dt_success_ci": [_r(dt_s["ci_low"], 3), _r(dt_s["ci_high"], 3)],
            "mlp_success": _r(mlp_s["mean"], 3), "mlp_success_ci": [_r(mlp_s["ci_low"], 3), _r(mlp_s["ci_high"], 3)],
            "episodes": episodes, "credit_episodes": int(value["n"]), "patching_pairs": int(len(patching)),
            "patching_pairs_left_out": skipped,
            "return_prediction": "value head: the return predicted from the history with every return-to-go token hidden"}
    if k1 is not None:
        k1_s = mean_ci(success["k1"], seed)
        nums.update(k1_success=_r(k1_s["mean"], 3), k1_success_ci=[_r(k1_s["ci_low"], 3), _r(k1_s["ci_high"], 3)])
    raw = {"success": success,
           "ig": {"span_share": np.asarray(v.span_share, float), "delta": np.abs(np.asarray(v.delta, float)),
                  "map_correlation": np.asarray(v.spearman, float), "key_ratio": np.asarray(v.share, float),
                  "random_key_ratio": np.asarray(v.randomized_share, float)},
           "ig_action": {"key_ratio": np.asarray(credit["action"].share, float)}}
    not_measured = {}
    if len(patching):
        raw["patching"] = patching
    else:
        why = "no pair of episodes with and without the key gave different values"
        not_measured.update(dict.fromkeys(("patching_span_effect", "patching_distractor_effect", "span_minus_distractor"), why))
    if k1 is None:
        why = missing.get("keydoor-dt-k1", "keydoor-dt-k1 is not trained yet")
        not_measured.update(dict.fromkeys(("success_dt_minus_k1", "k1_success"), why))
    fig = F.key_door_credit_bars({t: c.to_frame() for t, c in credit.items()})
    measured = (f"success DT {nums['dt_success']:.0%}" + (f", K=1 DT {nums['k1_success']:.0%}" if k1 is not None else "")
                + f" vs MLP {nums['mlp_success']:.0%}; ")
    if len(patching):
        measured += (f"patching the post-pickup span restores {restored(patching, 2):.2f} of the value difference, the "
                     f"distractor steps {restored(patching, 3):.2f} ({len(patching)} pairs); ")
    measured += (f"IG at the first phase-3 step ({nums['credit_episodes']} episodes): {np.nanmean(v.span_share):.0%} of the "
                 f"value head's credit on the pickup-to-end-of-phase-1 span; credit on the key step over uniform: return "
                 f"prediction {nums['key_share_over_uniform']:g} {nums['key_share_ci']}, action "
                 f"{nums['action_key_share_over_uniform']:g} {nums['action_key_share_ci']}, randomized model "
                 f"{nums['random_model_key_share_over_uniform']:g} {nums['random_model_key_share_ci']}")
    f = Finding("key_to_door", "Key-to-Door: memory and where the credit goes",
                "A sequence model can carry the key from phase 1 to the door in phase 3 where a Markov policy "
                "cannot; the memory should be causal.", measured, None, nums, {"key_to_door_credit": fig}, raw,
                not_measured, seed)
    return conclude_finding(f)


# ---- 4. compounding error ---------------------------------------------------------------------------------
# raw per seed: {"masked": [starts, 3] L2 error at H (TT with its history, the same TT with none, one-step model),
# "full": [starts, 2] (the 500-bin TT, one-step), "full_100": [starts, 2] (the shipped 100-bin TT, one-step; when
# loaded),
# "tt_floor", "tt100_floor": the TTs' quantization floors} on the same start states (rows resampled whole)
HELD_OUT_SEED = 1_000_000   # + training seed: the behaviour policy's collection seed for held-out episodes


def held_out_episodes(dataset, seed: int = 0, episodes: int = 32):
    """(fresh episodes of the dataset's environment and behaviour policy, whether they are held out): collected
    with seed HELD_OUT_SEED + seed, never the training data's collection seed."""
    from envs.behaviour import collect

    s = HELD_OUT_SEED + int(seed)
    ds = collect(dataset.env_id, episodes, seed=s, progress=False)
    trained_on = (dataset.metadata or {}).get("seed")
    return ds, trained_on is not None and int(trained_on) != s


def paired_errors(models: dict, dataset, horizon: int = 10, n_starts: int = 256, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """L2 error (raw obs units) at `horizon` of each model from the same start states: models {name: (agent,
    context)}, context = logged transitions a TT sees before the start (its real history; ignored by a one-step
    model). Starts: `n_starts` drawn (seeded) among steps with the largest context before them and `horizon`
    after. Returns ([starts, models] errors, starts)."""
    from analysis.behaviour.predictions import dynamics_rollout, tt_rollout

    H = int(horizon)
    ctx = max(c for _, c in models.values())
    pos = dataset.timesteps
    remaining = np.repeat(dataset.episode_ends, dataset.episode_lengths) - np.arange(dataset.n_transitions) - 1
    valid = np.flatnonzero((pos >= ctx) & (remaining >= H))
    rng = np.random.default_rng(seed)
    starts = np.sort(rng.choice(valid, size=min(int(n_starts), len(valid)), replace=False))
    truth = dataset.observations[starts + H].astype(np.float64)
    cols = []
    for agent, c in models.values():
        if agent.has("tokens"):
            tokens = agent.encode_transitions(dataset.observations, dataset.actions, dataset.rewards)
            pred = np.concatenate([tt_rollout(agent, dataset, starts[i:i + 256], H, c, tokens)[0][:, H - 1]
                                   for i in range(0, len(starts), 256)])
        else:
            pred = dynamics_rollout(agent, dataset.observations[starts],
                                    dataset.actions[starts[:, None] + np.arange(H)[None, :]])[0][:, H - 1]
        cols.append(np.linalg.norm(pred - truth, axis=-1))
    return np.stack(cols, 1), starts


def _tt_context(tt, horizon):
    from analysis.behaviour.predictions import default_context

    return min(default_context(tt, horizon), max(tt.context_length - 1, 0))


def _floor(tt) -> float:
    """The TT's quantization floor decode(encode(s)) on its training data (NaN if it has none)."""
    floor = tt.cfg.obs_quantization_floor
    return float(np.nan if floor is None else floor)


def compounding_error(pairs: dict, horizon: int = 10, n_starts: int = 256, seed: int = 0, held_out: dict | None = None,
                      tt100=None, missing: dict | None = None) -> Finding:
    """pairs: {"full": (tt, dynamics, dataset), "masked": (...)}: the figures and the training-data rows as before.
    held_out: {"full"|"masked": (dataset, is_held_out)} episodes for the paired measurement (default: the training
    data, then not held out); pairs["full"]'s TT is the 500-bin one; tt100: the shipped 100-bin full-Pendulum TT,
    measured beside it (None: not loaded, `missing` says why)."""
    from analysis.behaviour.predictions import error_by_horizon

    missing = missing or {}
    nums, figs = {}, {}
    for key, (tt, dyn, ds) in pairs.items():
        e_tt = error_by_horizon(tt, ds, 20, n_starts, seed, name="Trajectory Transformer")
        e_dyn = error_by_horizon(dyn, ds, 20, n_starts, seed, name="one-step MLP dynamics")
        i = horizon - 1
        nums[key] = {"horizon": horizon, "sequence_model_error": _r(e_tt.mean_l2[i], 4),
                     "sequence_model_error_ci": [_r(e_tt.ci_low[i], 4), _r(e_tt.ci_high[i], 4)],
                     "single_step_error": _r(e_dyn.mean_l2[i], 4),
                     "single_step_error_ci": [_r(e_dyn.ci_low[i], 4), _r(e_dyn.ci_high[i], 4)],
                     "quantization_floor": _r(e_tt.obs_quantization_floor, 4), "n_starts": n_starts,
                     "data": "the training data, start states drawn separately per model"}
        figs[f"compounding_error_{key}"] = F.error_vs_horizon([e_tt, e_dyn], f"Open-loop error by horizon — {ds.source}")
    held_out = held_out or {k: (ds, False) for k, (_, _, ds) in pairs.items()}
    tt, dyn, _ = pairs["masked"]
    ds, masked_held_out = held_out["masked"]
    c = _tt_context(tt, horizon)
    masked, _ = paired_errors({"tt": (tt, c), "tt_no_history": (tt, 0), "one_step": (dyn, 0)}, ds, horizon, n_starts, seed)
    raw = {"masked": masked}
    tt500, dyn_full, _ = pairs["full"]
    ds_full, full_held_out = held_out["full"]
    raw["full"], _ = paired_errors({"tt": (tt500, _tt_context(tt500, horizon)), "one_step": (dyn_full, 0)}, ds_full,
                                   horizon, n_starts, seed)
    raw["tt_floor"] = _floor(tt500)
    not_measured = {}
    if tt100 is not None:
        raw["full_100"], _ = paired_errors({"tt": (tt100, _tt_context(tt100, horizon)), "one_step": (dyn_full, 0)},
                                           ds_full, horizon, n_starts, seed)
        raw["tt100_floor"] = _floor(tt100)
    else:
        why = missing.get("pendulum-tt", "pendulum-tt is not loaded")
        not_measured.update(dict.fromkeys(("full_tt100_minus_one_step_h10", "full_tt100_h10", "tt100_floor"), why))
    nums["paired_starts"] = {"horizon": horizon, "n_starts": int(len(masked)), "tt_context": c,
                      "data": "held-out episodes" if masked_held_out else "the training data",
                      "masked_tt_minus_one_step": _r(np.mean(masked[:, 0] - masked[:, 2]), 4),
                      "masked_history_minus_no_history": _r(np.mean(masked[:, 0] - masked[:, 1]), 4)}
    m, f_ = nums["masked"], nums["full"]
    ps = nums["paired_starts"]
    measured = (f"H={horizon}, paired starts on {ps['data']}: masked Pendulum TT − one-step "
                f"{ps['masked_tt_minus_one_step']:g}, TT with {c} transitions of history − the same TT with none "
                f"{ps['masked_history_minus_no_history']:g}; on the training data (starts drawn per model): "
                f"masked TT {m['sequence_model_error']:g} {m['sequence_model_error_ci']} vs one-step "
                f"{m['single_step_error']:g} {m['single_step_error_ci']}; full Pendulum TT (500 bins) {f_['sequence_model_error']:g} vs "
                f"one-step {f_['single_step_error']:g} (TT floors {m['quantization_floor']:g} / {f_['quantization_floor']:g})")
    f = Finding("compounding_error", "Compounding error: memory vs a one-step model",
                "Open-loop under the logged actions, a one-step model compounds its errors; a sequence model "
                "conditions on the history.", measured, None, nums, figs, raw, not_measured, seed,
                flags={"held_out": bool(masked_held_out and full_held_out), "paired": True})
    return conclude_finding(f)


# ---- the metrics each finding's rule reads (findings.toml), and rows reported beside them ----------------------
def _mean_col(key, col=None, sub=None):
    def fn(raw):
        x = raw[key] if sub is None else raw[key][sub]
        return float(np.nanmean(x if col is None else x[:, col]))
    return fn


def _diff(key, a, b):
    return lambda raw: float(np.mean(raw[key][:, a] - raw[key][:, b]))


METRICS: dict[str, dict[str, Callable]] = {
    "return_conditioning": {"spearman": conditioning_spearman, "slope": conditioning_slope,
                            "calibration_mae": conditioning_calibration_mae},
    "context_pomdp": {
        "k20_over_k1": lambda r: _ratio(r["k20"], r["k1"]),
        "gru_over_mlp": lambda r: _ratio(r["gru"], r["mlp"]),
        **{f"{k}_return": (lambda r, k=k: float(np.mean(r[k]))) for k in ("k20", "k1", "gru", "mlp")}},
    "key_to_door": {
        "patching_span_effect": lambda r: restored(r["patching"], 2),
        "patching_distractor_effect": lambda r: restored(r["patching"], 3),
        "span_minus_distractor": lambda r: restored(r["patching"], 2) - restored(r["patching"], 3),
        "success_dt_minus_k1": lambda r: float(np.mean(r["success"]["dt"]) - np.mean(r["success"]["k1"])),
        "ig_span_share": _mean_col("ig", sub="span_share"),
        "ig_delta": _mean_col("ig", sub="delta"),
        "randomized_map_correlation": _mean_col("ig", sub="map_correlation"),
        "key_step_ratio": _mean_col("ig", sub="key_ratio"),
        "dt_success": _mean_col("success", sub="dt"),
        "k1_success": _mean_col("success", sub="k1"),
        "mlp_success": _mean_col("success", sub="mlp"),
        "success_dt_minus_mlp": lambda r: float(np.mean(r["success"]["dt"]) - np.mean(r["success"]["mlp"])),
        "randomized_key_step_ratio": _mean_col("ig", sub="random_key_ratio"),
        "action_key_step_ratio": _mean_col("ig_action", sub="key_ratio")},
    "compounding_error": {
        "tt_minus_one_step_h10": _diff("masked", 0, 2),
        "history_minus_no_history_h10": _diff("masked", 0, 1),
        "full_tt_minus_one_step_h10": _diff("full", 0, 1),
        "tt_floor": lambda r: float(r["tt_floor"]),
        "masked_tt_h10": _mean_col("masked", 0), "masked_tt_no_history_h10": _mean_col("masked", 1),
        "masked_one_step_h10": _mean_col("masked", 2),
        "full_tt100_minus_one_step_h10": _diff("full_100", 0, 1), "full_tt100_h10": _mean_col("full_100", 0),
        "full_one_step_h10": _mean_col("full", 1), "tt100_floor": lambda r: float(r["tt100_floor"])},
}


# beyond the data's best (raw[agent]["upper"], measured when [meta] beyond_targets asks): the agents' mean, and each
# agent's own row; kept apart from the in-range metrics
BEYOND_METRICS = {"beyond_gain": lambda raw: float(np.mean([agent_beyond_gain(a) for a in raw.values()])),
                  "beyond_slope": lambda raw: float(np.mean([agent_beyond_slope(a) for a in raw.values()]))}


def _conditioning_metrics(per_seed: dict) -> dict[str, Callable]:
    """METRICS["return_conditioning"] and each agent's own rows (the agents the seeds measured)."""
    out = dict(METRICS["return_conditioning"])
    agents = list(dict.fromkeys(a for raw in per_seed.values() for a in raw))
    rows = [("spearman", agent_spearman), ("slope", agent_slope), ("calibration_mae", agent_calibration_mae)]
    if any("upper" in a for raw in per_seed.values() for a in raw.values()):   # [meta] beyond_targets asked for them
        out.update(BEYOND_METRICS)
        rows += [("beyond_gain", agent_beyond_gain), ("beyond_slope", agent_beyond_slope)]
    for what, g in rows:
        for a in agents:
            out[f"{what} [{a}]"] = lambda raw, a=a, g=g: g(raw[a]) if a in raw else float("nan")
    return out


def finding_metrics(finding_id: str, per_seed: dict) -> dict[str, Callable]:
    """The metrics of a finding's module (finding_modules()) for these seeds' raw values."""
    return finding_module(finding_id).metrics(per_seed)


# ---- all of them ------------------------------------------------------------------------------------------------
# Every agent run_all asks load() for (shipped, or retrained from models/recipes.py): `cli.py reproduce --env
# AGENT=ID` may name only these. The findings' agents are those findings.toml names (seed runs train those); OPTIONAL:
# agents measured beside a finding when load() has them (the shipped 100-bin pendulum-tt; seed runs leave it out).
AGENTS = ("cartpole-dt", "pendulum-dt", "reacher-dt", "masked-cartpole-dt-k20", "masked-cartpole-dt-k1",
          "masked-cartpole-gru", "masked-cartpole-mlp", "keydoor-dt", "keydoor-dt-k1", "keydoor-mlp", "pendulum-tt-500",
          "pendulum-dynamics", "masked-pendulum-tt", "masked-pendulum-dynamics", "pendulum-tt")
OPTIONAL = ("pendulum-tt",)


class NotProvided(LookupError):
    """load(name) in a seed run for an agent the run did not train (only the findings' agents are trained)."""


def optional_agent(load: Callable[[str], object], name: str) -> tuple[object | None, str | None]:
    """(agent, None), or (None, why) when load(name) fails for an agent that is not shipped (sample_data/agents):
    nobody has trained it yet, or its checkpoint is not here; or when a seed run did not train it (NotProvided).
    A shipped agent that fails to load is an error."""
    try:
        return load(name), None
    except NotProvided as e:
        return None, str(e)
    except Exception as e:   # noqa: BLE001 - whatever load() raises for an agent that does not exist
        if (AGENT_DIR / name).is_dir():
            raise
        from models import recipes

        if name in recipes.all_recipes():   # the findings' recipes too: the reason says whether it was ever trained
            return None, f"{name} could not be loaded ({str(e).rstrip('.')})"
        return None, f"{name} is not trained yet"


def _measure_return_conditioning(load, datasets, seed: int, quick: bool) -> Finding:
    return return_conditioning({n: load(n) for n in registry().get("return_conditioning").agents}, 4 if quick else 16,
                               seed, 4 if quick else 6, registry().beyond_targets)


def _measure_context_pomdp(load, datasets, seed: int, quick: bool) -> Finding:
    return context_pomdp({"k20": load("masked-cartpole-dt-k20"), "k1": load("masked-cartpole-dt-k1"),
                          "gru": load("masked-cartpole-gru"), "mlp": load("masked-cartpole-mlp")}, 4 if quick else 16, seed)


def _measure_key_to_door(load, datasets, seed: int, quick: bool) -> Finding:
    return key_to_door(load("keydoor-dt"), load("keydoor-mlp"), datasets("keydoor"), 20 if quick else 100,
                       4 if quick else 32, seed, k1=load("keydoor-dt-k1"))


def _measure_compounding_error(load, datasets, seed: int, quick: bool) -> Finding:
    tt100, why = optional_agent(load, "pendulum-tt")
    pairs = {"full": (load("pendulum-tt-500"), load("pendulum-dynamics"), datasets("pendulum")),
             "masked": (load("masked-pendulum-tt"), load("masked-pendulum-dynamics"), datasets("masked-pendulum"))}
    held = {k: held_out_episodes(ds, seed, 8 if quick else 32) for k, (_, _, ds) in pairs.items()}
    return compounding_error(pairs, n_starts=64 if quick else 256, seed=seed, held_out=held, tt100=tt100,
                             missing={"pendulum-tt": why})


# ---- the registry of finding modules -------------------------------------------------------------------------
# A finding is measured by a module: measure(load, datasets, seed, quick) -> Finding (concluded on its seed), and the
# metrics its rule reads (pure functions of one seed's raw values). `seed` is the evaluation seed run_all draws for
# the finding and the training seed (the registration's reset scheme); the Finding is filed under the training seed.
# The code hash a registration pins (analysis/research/registration.py) is over `files`: the module, the pooling code
# every finding shares (SHARED_CODE) and the analysis code the module measures with.
SHARED_CODE = ("analysis/research/reproduce.py", "analysis/research/findings.py", "analysis/core/stats.py")


@dataclass(frozen=True)
class FindingModule:
    id: str
    title: str                                               # the progress line run_all logs
    measure: Callable                                        # (load, datasets, seed, quick) -> Finding
    metrics: Callable[[dict], dict[str, Callable]]           # per_seed -> {metric: fn(one seed's raw) -> float}
    files: tuple[str, ...]                                   # repository-relative paths its code hash covers
    n_boot: int = N_BOOT
    setting: str = ""                                        # where it is measured: "fully observed", "POMDP", ...
    paper_value: dict = field(default_factory=lambda: {"value": None, "where": "", "reason": "not stated"})


BUILTIN = (
    FindingModule("return_conditioning", "return conditioning", _measure_return_conditioning, _conditioning_metrics,
                  SHARED_CODE + ("analysis/behaviour/sweeps.py", "analysis/behaviour/evaluate.py"),
                  N_BOOT // 4,   # a rank correlation per resample and agent: 500 resamples
                  "fully observed (CartPole, Pendulum, Reacher), online rollouts",
                  {"value": None, "where": "Chen et al. 2021, Fig. 4", "reason": "a plot of achieved vs target return "
                   "(Atari and D4RL); no correlation or slope is stated"}),
    FindingModule("context_pomdp", "context vs Markov: masked CartPole", _measure_context_pomdp,
                  lambda per_seed: dict(METRICS["context_pomdp"]), SHARED_CODE + ("analysis/behaviour/evaluate.py",),
                  setting="POMDP (velocity-masked CartPole)",
                  paper_value={"value": None, "where": "Chen et al. 2021, Table 5", "reason": "Atari ratios K=30 / K=1 "
                               "of 1.1 to 42 by game (papers rows); no POMDP CartPole number"}),
    FindingModule("key_to_door", "Key-to-Door: success, patching and credit", _measure_key_to_door,
                  lambda per_seed: dict(METRICS["key_to_door"]),
                  SHARED_CODE + ("analysis/behaviour/evaluate.py", "analysis/interp/keydoor_credit.py"),
                  setting="POMDP (Key-to-Door), scripted seek-or-avoid behaviour data, not the paper's uniform random",
                  paper_value={"value": None, "where": "Chen et al. 2021, Table 6", "reason": "the paper reports success "
                               "rates (DT 0.718 / 0.946 on 1K / 10K random trajectories), not activation patching"}),
    FindingModule("compounding_error", "compounding error: Pendulum and masked Pendulum (held-out episodes, paired starts)",
                  _measure_compounding_error, lambda per_seed: dict(METRICS["compounding_error"]),
                  SHARED_CODE + ("analysis/behaviour/predictions.py",),
                  setting="POMDP headline (velocity-masked Pendulum); fully observed Pendulum beside",
                  paper_value={"value": None, "where": "Janner et al. 2021, compounding-error figure",
                               "reason": "a plot (humanoid, horizons to 100); no number in text"}),
)
# Finding modules written as analysis/research/<id>.py (measure, METRICS; optional TITLE, CODE: extra repository-
# relative files its numbers depend on, N_BOOT, SETTING, PAPER_VALUE {"value", "where", "reason"}): one line here.
MODULES: tuple[str, ...] = ("analysis.research.key_to_door_paper", "analysis.research.delayed_reward",
                             "analysis.research.compounding_paper", "analysis.research.memory_pendulum")


def _from_module(path: str) -> FindingModule:
    import importlib

    mod = importlib.import_module(path)
    fid = getattr(mod, "ID", path.rsplit(".", 1)[-1])
    own = path.replace(".", "/") + ".py"
    return FindingModule(fid, getattr(mod, "TITLE", fid.replace("_", " ")), mod.measure,
                         lambda per_seed, m=mod: dict(m.METRICS), (own, *SHARED_CODE, *getattr(mod, "CODE", ())),
                         getattr(mod, "N_BOOT", N_BOOT), getattr(mod, "SETTING", ""),
                         dict(getattr(mod, "PAPER_VALUE", {"value": None, "where": "", "reason": "the module states none"})))


def finding_modules() -> dict[str, FindingModule]:
    """{finding id: FindingModule}: the four built in here, then MODULES."""
    out = {m.id: m for m in BUILTIN}
    for path in MODULES:
        m = _from_module(path)
        if m.id in out:
            raise FindingsError(f"two finding modules measure '{m.id}' ({path} and another); a finding has one.")
        out[m.id] = m
    return out


def finding_module(finding_id: str) -> FindingModule:
    mods = finding_modules()
    if finding_id not in mods:
        raise FindingsError(f"findings.toml registers the finding '{finding_id}', but no module measures it; add "
                            f"analysis/research/{finding_id}.py to reproduce.MODULES (it has {', '.join(mods)}).")
    return mods[finding_id]


def evaluation_seed(finding_id: str, seed: int, training_seed: int | None = None, scheme: str | None = None) -> int:
    """The seed a finding's evaluation starts from (reset seeds seed + i). Registration 1 ("offset"): `seed` itself,
    so training seeds k and k + 1 shared all but one of their start states. "stream": drawn from
    SeedSequence([training seed, crc32(finding id), seed]), below 2**30: each training seed and finding has its own
    start states (blocks of 10,000 resets never overlap across 20 seeds: tests/test_reproduce.py)."""
    scheme = scheme or registry().reset_seeds
    if scheme == "offset":
        return int(seed)
    ts = int(seed if training_seed is None else training_seed)
    return int(np.random.SeedSequence([ts, zlib.crc32(finding_id.encode()), int(seed)]).generate_state(1)[0] >> 2)


def run_all(load: Callable[[str], object], datasets: Callable[[str], object], seed: int = 0, quick: bool = False,
            log: Callable[[str], None] = print, training_seed: int | None = None) -> list[Finding]:
    """load(name) -> agent (shipped or retrained), datasets(name) -> Dataset. Every finding findings.toml registers,
    in its order, by its module (finding_modules). quick shrinks episode counts; seed seeds the evaluation (drawn
    per finding and training seed: evaluation_seed); training_seed (default: seed) is the seed the agents were
    trained with (0 for the shipped ones), which the findings are filed under. Each finding comes back concluded
    on this seed alone (`pool_runs` pools it with other seeds)."""
    out = []
    filed = seed if training_seed is None else training_seed
    for spec in registry().findings:
        mod = finding_module(spec.id)
        log(mod.title + (f": {', '.join(spec.agents)}" if spec.id == "return_conditioning" else ""))
        f = mod.measure(load, datasets, evaluation_seed(spec.id, seed, training_seed), quick)
        if f.seed != filed:
            f.seed = filed
            conclude_finding(f, seed=seed)
        out.append(f)
    return out


def command_line(args) -> str:
    """The `cli.py reproduce` command that `args` stand for (written into each seed file)."""
    parts = ["python", "cli.py", "reproduce"]
    if getattr(args, "retrain", False):
        parts += ["--retrain", "--seeds", str(args.seeds)]
    elif getattr(args, "seed", 0):
        parts += ["--seed", str(args.seed)]
    if getattr(args, "quick", False):
        parts.append("--quick")
    for e in getattr(args, "env", None) or []:
        parts += ["--env", e]
    for flag in ("seed_list", "agents", "from_agents", "steps_scale"):
        v = getattr(args, flag, None)
        if v not in (None, False, "", 1.0):
            parts += ["--" + flag.replace("_", "-"), str(v)]
    parts += ["--out", str(args.out)]
    return " ".join(parts)


def describe_seeds(measured: dict, others: dict, how: str = "measured here") -> dict[str, str]:
    """{seed: where its numbers come from}: the runs measured now ({seed: findings}) and the seed files pooled
    with them ({seed: seed-file doc}; an in-memory run has no command)."""
    out = {str(k): how for k in measured}
    for k, doc in sorted(others.items()):
        if str(k) not in out:
            fc = doc.get("findings_toml") or {}
            out[str(k)] = (f"seed{k}.json, made by `{doc['command']}` on {doc.get('created', '?')}"
                           + (f" (findings.toml at commit {fc['commit']})" if fc.get("commit") else "")
                           + (f"; {doc['note']}" if doc.get("note") else "")
                           if doc.get("command") else how)
    return out
