"""Compounding error as the Trajectory Transformer paper means it (Janner et al. 2021, Fig. 2; issue 24, item 2).

The claim: rolled open loop under the logged actions, a one-step model's error compounds with the horizon while a
sequence model's grows more slowly. The verdict is read on FULLY OBSERVED tasks (on a partially observed one history
alone wins: analysis/research/memory_pendulum.py is that separate memory finding), at horizons up to H_MAX = 100.
Four models per task separate history from sequence modelling:

  tt                the TT with its context (K - 1 logged transitions, then its own predictions as the window slides)
  tt_no_history     the history-free TT (K = 2: its state predictions read the current transition only)
  one_step_history  the one-step dynamics model given the TT's history (hparams history = K - 1)
  one_step          the Markov one-step dynamics model

The TTs are trained until their validation one-step error is at least as good as the one-step model's, with a cap
(analysis/research/train_until.py; whether they got there is in their checkpoints' training["until"] and in the
numbers here). Every model is rolled from the same start states of held-out episodes (reproduce.held_out_episodes),
each given its own context of logged transitions before the start (a model that reads none ignores them); a start
needs MAX_CONTEXT logged steps before it and H_MAX after it.

raw per seed: {task: [starts, 4, H_MAX] L2 errors (raw obs units), models in MODELS order, horizon h at index h - 1;
f"{task}_floor": the TT's quantization floor}. One array per task so the pooled bootstrap resamples start states
whole (the four models and every horizon stay paired).
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from analysis.research.reproduce import Finding, held_out_episodes

H_MAX = 100
MODELS = ("tt", "tt_no_history", "one_step_history", "one_step")
LABELS = {"tt": "TT, its context", "tt_no_history": "TT, no history (K = 2)",
          "one_step_history": "one-step, the TT's history", "one_step": "one-step, no history"}
# the recipes (models/recipes.py) of each fully observed task's four models
TASKS = {
    "pendulum": {"data": "pendulum", "tt": "pendulum-tt-paper", "tt_no_history": "pendulum-tt-markov",
                 "one_step_history": "pendulum-dynamics-h11", "one_step": "pendulum-dynamics"},
}
HORIZONS = (1, 10, 100)   # where the metrics read the curves


# ---- metrics (pure functions of one seed's raw values) -------------------------------------------------------
def _col(model: str) -> int:
    return MODELS.index(model)


def mean_error(task: str, model: str, h: int) -> Callable[[dict], float]:
    """Mean L2 of `model` at horizon h over the task's starts."""
    return lambda raw: float(np.mean(np.asarray(raw[task])[:, _col(model), h - 1]))


def paired_diff(task: str, a: str, b: str, h: int) -> Callable[[dict], float]:
    """Mean over the task's starts of (a's error - b's error) at horizon h: negative when a predicts better."""
    return lambda raw: float(np.mean(np.asarray(raw[task])[:, _col(a), h - 1] - np.asarray(raw[task])[:, _col(b), h - 1]))


def error_ratio(task: str, a: str, b: str, h: int) -> Callable[[dict], float]:
    """a's mean error over b's at horizon h (NaN when b's is 0)."""
    def fn(raw):
        e = np.asarray(raw[task])
        den = float(np.mean(e[:, _col(b), h - 1]))
        return float(np.mean(e[:, _col(a), h - 1])) / den if den else float("nan")
    return fn


def growth(task: str, model: str, h: int) -> Callable[[dict], float]:
    """How much a model's error grows from horizon 1 to h: mean error at h over mean error at 1 (compounding)."""
    def fn(raw):
        e = np.asarray(raw[task])[:, _col(model)]
        first = float(np.mean(e[:, 0]))
        return float(np.mean(e[:, h - 1])) / first if first else float("nan")
    return fn


def task_metrics(task: str) -> dict[str, Callable[[dict], float]]:
    """The metrics of one task: the TT minus the one-step model (the paper's comparison), the history effect within
    each family, the sequence effect at equal history, each model's error, at H = 1, 10, 100; and growth to 100."""
    out = {}
    for h in HORIZONS:
        out[f"{task}_tt_minus_one_step_h{h}"] = paired_diff(task, "tt", "one_step", h)
        out[f"{task}_tt_over_one_step_h{h}"] = error_ratio(task, "tt", "one_step", h)
        out[f"{task}_tt_history_effect_h{h}"] = paired_diff(task, "tt", "tt_no_history", h)
        out[f"{task}_one_step_history_effect_h{h}"] = paired_diff(task, "one_step_history", "one_step", h)
        out[f"{task}_sequence_effect_h{h}"] = paired_diff(task, "tt", "one_step_history", h)
        out[f"{task}_sequence_effect_no_history_h{h}"] = paired_diff(task, "tt_no_history", "one_step", h)
        for m in MODELS:
            out[f"{task}_{m}_h{h}"] = mean_error(task, m, h)
    for m in MODELS:
        out[f"{task}_{m}_growth_h{H_MAX}"] = growth(task, m, H_MAX)
    out[f"{task}_tt_floor"] = lambda raw, t=task: float(raw[f"{t}_floor"])
    return out


TITLE = "Compounding error as the TT paper means it: fully observed, horizons to 100"
SETTING = "fully observed (Pendulum), held-out episodes, paired starts, horizons 1..100"
PAPER_VALUE = {"value": None, "where": "Janner et al. 2021, compounding-error figure",
               "reason": "a plot (humanoid, horizons to 100); no number in text"}

METRICS: dict[str, Callable[[dict], float]] = {k: v for t in TASKS for k, v in task_metrics(t).items()}


# ---- measurement -------------------------------------------------------------------------------------------
def model_context(agent) -> int:
    """Logged transitions a model reads before a start (train_until's rule, so the finding and the stopping rule
    give each model the same history)."""
    from analysis.research.train_until import model_context as ctx

    return ctx(agent)


def paired_curves(models: dict, dataset, horizon: int = H_MAX, n_starts: int = 256, seed: int = 0,
                  batch: int = 128) -> tuple[np.ndarray, np.ndarray, int]:
    """[starts, models, horizon] L2 errors (raw obs units) of each model in `models` ({name: agent}, in order) rolled
    open loop from the same start states, each given model_context(agent) logged transitions; the starts are drawn
    (seeded) among steps with the largest of those contexts before them and `horizon` after. Returns (errors,
    starts, that context)."""
    from analysis.behaviour.predictions import open_loop

    H = int(horizon)
    ctx = max(model_context(a) for a in models.values())
    remaining = np.repeat(dataset.episode_ends, dataset.episode_lengths) - np.arange(dataset.n_transitions) - 1
    valid = np.flatnonzero((dataset.timesteps >= ctx) & (remaining >= H))
    if not len(valid):
        raise ValueError(f"{dataset.source} has no step with {ctx} steps before it and {H} after it.")
    starts = np.sort(np.random.default_rng(seed).choice(valid, size=min(int(n_starts), len(valid)), replace=False))
    truth = dataset.observations[starts[:, None] + np.arange(1, H + 1)[None, :]].astype(np.float64)
    out = np.zeros((len(starts), len(models), H))
    for j, agent in enumerate(models.values()):
        tokens = (agent.encode_transitions(dataset.observations, dataset.actions, dataset.rewards)
                  if agent.has("tokens") else None)
        c = model_context(agent)
        for i in range(0, len(starts), batch):
            s = starts[i:i + batch]
            obs, _ = open_loop(agent, dataset, s, H, c, tokens)
            out[i:i + batch, j] = np.linalg.norm(obs - truth[i:i + batch], axis=-1)
    return out, starts, ctx


def curve_ci(errors: np.ndarray, seed: int = 0, n_boot: int = 1000, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Percentile bootstrap CI of the mean over starts at every horizon: errors [starts, H] -> (low [H], high [H]).
    Each resample draws the starts once for every horizon (the curve is resampled whole), as counts times the errors."""
    S = len(errors)
    rng = np.random.default_rng(seed)
    counts = np.zeros((n_boot, S))
    np.add.at(counts, (np.repeat(np.arange(n_boot), S), rng.integers(0, S, n_boot * S)), 1.0)
    means = counts @ np.asarray(errors, float) / S
    a = (1 - level) / 2
    return np.quantile(means, a, axis=0), np.quantile(means, 1 - a, axis=0)


def _label(m: str, agent) -> str:
    c = model_context(agent)
    return LABELS[m] + (f" ({c} transitions)" if m in ("tt", "one_step_history") else "")


def _until(agent) -> dict | None:
    u = (agent.config.training or {}).get("until")
    if not u:
        return None
    return {k: u[k] for k in ("reference", "reference_one_step_error", "one_step_error", "reached", "cap")} | {
        "steps": agent.config.training.get("steps")}


def _r(x, d=4):
    return None if x is None or not np.isfinite(x) else round(float(x), d)


def measure(load: Callable[[str], object], datasets: Callable[[str], object], seed: int = 0,
            quick: bool = False) -> Finding:
    """Every task's four models (load(recipe name)) rolled H_MAX steps from paired held-out start states
    (datasets(name) -> the training Dataset, whose environment and behaviour collect the held-out episodes)."""
    from analysis.publish import figures as F
    from analysis.behaviour.predictions import HorizonError

    episodes, n_starts = (8, 32) if quick else (32, 256)
    raw, nums, figs, held = {}, {"fully_observed": True, "horizons": list(range(1, H_MAX + 1))}, {}, []
    for task, spec in TASKS.items():
        ds = datasets(spec["data"])
        models = {m: load(spec[m]) for m in MODELS}
        ho, is_held_out = held_out_episodes(ds, seed, episodes)
        held.append(is_held_out)
        errors, starts, ctx = paired_curves(models, ho, H_MAX, n_starts, seed)
        raw[task] = errors
        tt = models["tt"]
        floor = tt.cfg.obs_quantization_floor
        raw[f"{task}_floor"] = float("nan" if floor is None else floor)
        row = {"n_starts": int(len(starts)), "start_context": int(ctx), "held_out": bool(is_held_out),
               "held_out_episodes": int(ho.n_episodes), "tt_floor": _r(raw[f"{task}_floor"]),
               "contexts": {m: model_context(a) for m, a in models.items()},
               "training": {m: _until(a) for m, a in models.items() if _until(a)}}
        for m in MODELS:
            row[m] = {f"h{h}": _r(errors[:, _col(m), h - 1].mean()) for h in HORIZONS}
        nums[task] = row
        cis = [curve_ci(errors[:, j], seed) for j in range(len(MODELS))]
        # each label says what the model reads (reads_context off: four models' contexts overflow the subtitle)
        curves = [HorizonError(model=_label(m, models[m]), kind=models[m].kind, horizons=np.arange(1, H_MAX + 1),
                               mean_l2=errors[:, j].mean(0), ci_low=cis[j][0], ci_high=cis[j][1],
                               reward_mae=np.full(H_MAX, np.nan), errors=errors[:, j], starts=starts,
                               n_starts=len(starts), seed=seed, context=model_context(models[m]),
                               reads_context=False,
                               obs_quantization_floor=raw[f"{task}_floor"] if m.startswith("tt") else None)
                  for j, m in enumerate(MODELS)]
        figs[f"compounding_paper_{task}"] = F.error_vs_horizon(
            curves, f"Open-loop error by horizon, fully observed {ds.source} (held-out episodes, paired starts)")
    p = nums["pendulum"]
    measured = (f"fully observed Pendulum, {p['n_starts']} paired held-out starts: TT {p['tt']['h1']:g} / "
                f"{p['tt']['h10']:g} / {p['tt']['h100']:g} at H = 1 / 10 / 100, TT without history "
                f"{p['tt_no_history']['h1']:g} / {p['tt_no_history']['h10']:g} / {p['tt_no_history']['h100']:g}, one-step "
                f"with the TT's history {p['one_step_history']['h1']:g} / {p['one_step_history']['h10']:g} / "
                f"{p['one_step_history']['h100']:g}, one-step {p['one_step']['h1']:g} / {p['one_step']['h10']:g} / "
                f"{p['one_step']['h100']:g} (TT floor {p['tt_floor']:g})")
    f = Finding("compounding_paper", "Compounding error (TT paper, Fig. 2): fully observed, horizons to 100",
                "Open loop under the logged actions, a one-step model's error compounds with the horizon; a sequence "
                "model's grows more slowly (Janner et al. 2021).", measured, None, nums, figs, raw, {}, seed,
                flags={"held_out": all(held), "paired": True, "fully_observed": True})
    return f
