"""Interval estimates, one place, on scipy.stats: every CI seqlens reports comes from here. Imports nothing
from seqlens. Sizes (n_boot, level) are keyword-only.

- `bootstrap_ci`: percentile (default, rliable's choice) or BCa bootstrap of any statistic. With the
  same seed it equals the loop it replaced bit for bit up to float rounding: scipy draws the resample
  indices as `rng.integers(0, n, (n_resamples, n))`, exactly as the hand-written copies did.
- `iqm`: the interquartile mean, `scipy.stats.trim_mean(x, 0.25)` (the same slice as rliable's).
- `interval_estimates`: mean and IQM with CIs from the same resamples (one seed).
- `paired_difference_ci`: mean(a - b) over paired runs (same seeds / episodes on both sides).
- `ratio_ci`: mean(a) / mean(b), a and b resampled independently.
- `mean_ci`: mean of the finite values with its percentile CI.
- `rowwise_bootstrap_ci`: any scalar statistic of a [groups, n] table, resampled within each group
  (e.g. episodes within each target of a sweep).
- `stratified_bootstrap_ci`: the mean over groups (training seeds) of per-group statistics, resampling the groups
  and then the units within each drawn group (the findings' pooled intervals of registration 1).
- `t_interval`: Student's t interval of the mean of per-seed values (the across-seed interval from registration 2:
  it covers 95% at 5 seeds whether seed or episode variance dominates; `coverage` shows it, the stratified
  bootstrap does not: 84-87% when seed variance dominates).
- `iqm_ci`: the IQM of per-seed values with a percentile-bootstrap CI over seeds (rliable's aggregate).
- `performance_profile`: rliable's score distribution, the fraction of runs above each threshold tau (averaged
  over tasks), with stratified-bootstrap bands (runs resampled within each task). Written here rather than
  depending on `rliable`: that package pulls arch, statsmodels, seaborn and absl for these ~30 lines.
- `coverage`: a simulation of how often an across-seed interval holds the true mean (`python -m
  analysis.core.stats` prints the table; tests/test_stats.py checks it at a fixed RNG).
"""
from __future__ import annotations

from typing import Callable

import numpy as np
from scipy import stats

N_BOOT = 2000
LEVEL = 0.95


def iqm(x, axis: int = -1) -> np.ndarray:
    """Interquartile mean: the mean of the middle 50% (robust to a few outlier episodes)."""
    return stats.trim_mean(np.asarray(x, float), 0.25, axis=axis)


def _mean(x, axis=-1):
    return np.mean(x, axis=axis)


def bootstrap_ci(values, statistic: Callable = _mean, *, n_boot: int = N_BOOT, level: float = LEVEL, seed: int = 0,
                 method: str = "percentile") -> tuple[float, float]:
    """(low, high) of a bootstrap interval of statistic(values); a single value gives (value, value)."""
    x = np.asarray(values, float)
    if len(x) < 2 or np.all(x == x[0]):   # nothing to resample (BCa would divide by zero)
        v = float(statistic(x, axis=-1))
        return v, v
    res = stats.bootstrap((x,), statistic, n_resamples=n_boot, confidence_level=level, method=method,
                          rng=np.random.default_rng(seed), vectorized=True, axis=-1)
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def interval_estimates(returns, *, n_boot: int = N_BOOT, level: float = LEVEL, seed: int = 0) -> dict:
    """Mean and IQM of one target's episode returns with percentile-bootstrap CIs (same resamples)."""
    r = np.asarray(returns, float)
    m_lo, m_hi = bootstrap_ci(r, _mean, n_boot=n_boot, level=level, seed=seed)
    i_lo, i_hi = bootstrap_ci(r, iqm, n_boot=n_boot, level=level, seed=seed)
    return {"mean": float(r.mean()), "ci_low": m_lo, "ci_high": m_hi,
            "iqm": float(iqm(r)), "iqm_ci_low": i_lo, "iqm_ci_high": i_hi}


def paired_difference_ci(a, b, *, n_boot: int = N_BOOT, level: float = LEVEL, seed: int = 0) -> dict:
    """mean(a - b) over pairs (a[i] and b[i] share a seed or an episode) with its bootstrap CI."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if a.shape != b.shape:
        raise ValueError(f"paired samples need equal lengths, got {a.shape} and {b.shape}.")
    lo, hi = bootstrap_ci(a - b, _mean, n_boot=n_boot, level=level, seed=seed)
    return {"mean": float((a - b).mean()), "ci_low": lo, "ci_high": hi, "n": int(len(a))}


def ratio_ci(a, b, seed: int = 0, *, n_boot: int = N_BOOT, level: float = LEVEL) -> tuple[float, float, float]:
    """(mean(a) / mean(b), low, high) with a and b resampled independently (percentile bootstrap)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    point = float(a.mean() / b.mean()) if b.mean() else float("nan")
    rng = np.random.default_rng(seed)
    ra = a[rng.integers(0, len(a), (n_boot, len(a)))].mean(1)   # scipy's draws for (a, b), in its order
    rb = b[rng.integers(0, len(b), (n_boot, len(b)))].mean(1)
    ratio = ra / np.where(rb == 0, np.nan, rb)                   # a resample with mean(b) = 0 has no ratio
    if np.isnan(ratio).all():
        return point, float("nan"), float("nan")
    lo, hi = np.nanquantile(ratio, [(1 - level) / 2, (1 + level) / 2])
    return point, float(lo), float(hi)


def mean_ci(x, seed: int = 0, *, n_boot: int = N_BOOT, level: float = LEVEL) -> dict:
    """Mean of the finite values with a percentile-bootstrap CI and their count."""
    x = np.asarray(x, float)
    x = x[np.isfinite(x)]
    lo, hi = bootstrap_ci(x, n_boot=n_boot, level=level, seed=seed)
    return {"mean": float(x.mean()), "ci_low": lo, "ci_high": hi, "n": int(len(x))}


def rowwise_bootstrap_ci(table, statistic: Callable[[np.ndarray], float], *, n_boot: int = N_BOOT, level: float = LEVEL,
                         seed: int = 0, nan_as: float | None = None) -> tuple[float, float]:
    """Percentile interval of statistic(table resampled within each row) for a [rows, n] table: each
    resample draws rng.integers(0, n, (rows, n)), one column index set per row. nan_as replaces a
    statistic that is NaN on a resample (e.g. 0.0 for a rank correlation of all-tied values)."""
    x = np.asarray(table, float)
    rng = np.random.default_rng(seed)
    rows, n = x.shape
    stats_ = []
    for _ in range(n_boot):
        v = statistic(np.take_along_axis(x, rng.integers(0, n, size=(rows, n)), 1))
        stats_.append(nan_as if nan_as is not None and np.isnan(v) else v)
    lo, hi = np.quantile(stats_, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def _resample_units(x, rng):
    """One resample of a group's raw values: an array's rows drawn with replacement (other axes ride along), each
    array of a dict / list / tuple independently (dict keys in sorted order); anything else unchanged."""
    if isinstance(x, np.ndarray):
        n = len(x)
        return x if n == 0 else x[rng.integers(0, n, n)]
    if isinstance(x, dict):
        return {k: _resample_units(x[k], rng) for k in sorted(x)}
    if isinstance(x, (list, tuple)):
        return type(x)(_resample_units(v, rng) for v in x)
    return x


def stratified_bootstrap_ci(groups: list, statistics: dict[str, Callable], *, n_boot: int = N_BOOT, level: float = LEVEL,
                            seed: int = 0) -> dict[str, tuple[float, float]]:
    """{name: (low, high)}: percentile intervals of mean over groups of statistic(group's raw values), every statistic on
    the same two-stage resamples: the groups drawn with replacement (rng [seed, 0x5EED]; one group: itself), then the
    units within each drawn group (rng seed; for one group scipy's order). A statistic that is NaN on a resample leaves
    that resample out of its interval; no finite resample gives (nan, nan)."""
    n = len(groups)
    within = np.random.default_rng(seed)                   # draws of units within a group (scipy's order for one group)
    across = np.random.default_rng([seed, 0x5EED])         # draws of groups
    boot = {name: np.empty(n_boot) for name in statistics}
    for b in range(n_boot):
        chosen = across.integers(0, n, n) if n > 1 else np.zeros(1, int)
        sums = dict.fromkeys(statistics, 0.0)
        for j in chosen:
            r = _resample_units(groups[j], within)
            for name, fn in statistics.items():
                sums[name] += float(fn(r))
        for name in statistics:
            boot[name][b] = sums[name] / n
    q = [(1 - level) / 2, (1 + level) / 2]
    out = {}
    for name in statistics:
        v = boot[name][np.isfinite(boot[name])]
        lo, hi = (float(x) for x in np.quantile(v, q)) if len(v) else (float("nan"), float("nan"))
        if len(v) and np.all(v == v[0]):   # no spread: the value, exactly
            lo = hi = float(v[0])
        out[name] = (lo, hi)
    return out


def t_interval(values, *, level: float = LEVEL) -> tuple[float, float, float]:
    """(mean, low, high) of Student's t interval over per-seed values (n - 1 degrees of freedom). One value has no
    spread to estimate: (value, nan, nan). Equal values: (value, value, value)."""
    x = np.asarray(values, float)
    m = float(x.mean())
    if len(x) < 2:
        return m, float("nan"), float("nan")
    sd = float(x.std(ddof=1))
    if sd == 0:
        return m, m, m
    half = float(stats.t.ppf((1 + level) / 2, len(x) - 1)) * sd / np.sqrt(len(x))
    return m, m - half, m + half


def iqm_ci(values, *, n_boot: int = N_BOOT, level: float = LEVEL, seed: int = 0) -> dict:
    """{"iqm", "ci_low", "ci_high", "n"}: the interquartile mean of per-seed values, its percentile-bootstrap CI."""
    x = np.asarray(values, float)
    lo, hi = bootstrap_ci(x, iqm, n_boot=n_boot, level=level, seed=seed)
    return {"iqm": float(iqm(x)), "ci_low": lo, "ci_high": hi, "n": int(len(x))}


def performance_profile(scores, taus, *, n_boot: int = N_BOOT, level: float = LEVEL, seed: int = 0) -> dict:
    """rliable's performance profile: for each tau the fraction of runs scoring above tau (scores [runs] for one
    task or [runs, tasks], averaged over tasks), with percentile bands from resampling the runs within each task.
    Returns {"tau", "profile", "ci_low", "ci_high"} as lists."""
    x = np.asarray(scores, float)
    x = x[:, None] if x.ndim == 1 else x
    t = np.asarray(taus, float)
    runs, tasks = x.shape

    def profile(s):   # s [..., runs, tasks] -> [..., taus]
        return (s[..., None] > t).mean(axis=(-3, -2))
    point = profile(x)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, runs, (n_boot, runs, tasks))
    boot = profile(np.take_along_axis(np.broadcast_to(x, (n_boot, runs, tasks)), idx, 1))
    lo, hi = np.quantile(boot, [(1 - level) / 2, (1 + level) / 2], axis=0)
    return {"tau": t.tolist(), "profile": point.tolist(), "ci_low": lo.tolist(), "ci_high": hi.tolist()}


# ---- coverage of an across-seed interval ------------------------------------------------------------------
INTERVALS = ("t_over_seeds", "stratified_bootstrap")


def _stratified_means_ci(table, n_boot, level, rng):
    """The stratified bootstrap of stratified_bootstrap_ci for the mean metric, vectorised over resamples (the same
    two stages: seeds with replacement, then units within each drawn seed)."""
    n, m = table.shape
    seeds = rng.integers(0, n, (n_boot, n))
    units = rng.integers(0, m, (n_boot, n, m))
    boot = table[seeds[..., None], units].mean(axis=(1, 2))
    lo, hi = np.quantile(boot, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def coverage(method: str, n_seeds: int = 5, n_units: int = 16, seed_sd: float = 1.0, unit_sd: float = 1.0, *,
             reps: int = 1000, n_boot: int = 500, level: float = LEVEL, seed: int = 0, skew: bool = False) -> float:
    """Share of `reps` simulated experiments whose across-seed interval (`method`, one of INTERVALS) holds the true
    mean: each training seed draws an effect N(0, seed_sd) (skew: a centred lognormal of the same sd, a metric with
    a long tail), each of its n_units episodes that effect plus N(0, unit_sd); the metric is the mean."""
    if method not in INTERVALS:
        raise ValueError(f"coverage knows the intervals {', '.join(INTERVALS)}; got '{method}'.")
    rng = np.random.default_rng(seed)
    hits = 0
    for _ in range(reps):
        if skew:
            z = rng.lognormal(0.0, 1.0, n_seeds)
            effect = (z - np.exp(0.5)) / np.sqrt((np.e - 1) * np.e) * seed_sd
        else:
            effect = rng.normal(0.0, seed_sd, n_seeds)
        table = effect[:, None] + rng.normal(0.0, unit_sd, (n_seeds, n_units))
        if method == "t_over_seeds":
            _, lo, hi = t_interval(table.mean(1), level=level)
        else:
            lo, hi = _stratified_means_ci(table, n_boot, level, rng)
        hits += lo <= 0.0 <= hi
    return hits / reps


REGIMES = {"seed variance dominates": dict(seed_sd=1.0, unit_sd=0.5), "episode variance dominates":
           dict(seed_sd=0.05, unit_sd=2.0), "seed variance dominates, skewed": dict(seed_sd=1.0, unit_sd=0.5, skew=True)}


def coverage_table(n_seeds: int = 5, reps: int = 1000, seed: int = 0) -> dict:
    """{regime: {interval: coverage}} at n_seeds seeds and 16 episodes per seed."""
    return {name: {m: coverage(m, n_seeds, reps=reps, seed=seed, **kw) for m in INTERVALS} for name, kw in REGIMES.items()}


if __name__ == "__main__":   # python -m analysis.core.stats [N_SEEDS]: the coverage table
    import sys

    n = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    for regime, row in coverage_table(n).items():
        print(f"{regime:<36} " + "  ".join(f"{m} {v:.3f}" for m, v in row.items()))
