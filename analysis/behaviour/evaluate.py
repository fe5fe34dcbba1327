"""Evaluation in the environment (`cli.py evaluate`): every episode of every target return in one batched vector env
(models/rollout.py), with bootstrap 95% confidence intervals of the mean return (analysis/core/stats.py); and a
one-step dynamics model's open-loop prediction error."""
from __future__ import annotations

import sys
import warnings

import numpy as np
from tqdm import tqdm

import envs  # noqa: F401 - registers seqlens' environments
from trajectories import Dataset

from models import rollout
from models.base import Agent
from models.checks import check_dataset, check_targets
from models.errors import AgentError

from analysis.core.stats import bootstrap_ci


def _bar(total: int, desc: str, show: bool):
    """A tqdm bar on stderr driven by the rollout engine's progress(fraction, message)."""
    bar = tqdm(total=total, desc=desc, unit="ep", file=sys.stderr, disable=not show)

    def progress(fraction: float, message: str = "") -> None:
        done = round(fraction * total)
        if done > bar.n:
            bar.update(done - bar.n)
    return bar, progress


def run_episodes(agent: Agent, n_envs: int, target_returns: np.ndarray | None, seed: int = 0, sample: bool = True,
                 progress: bool = True, env_id: str | None = None) -> np.ndarray:
    """Returns [n_envs] of one episode per env, all envs stepped together in one vector env
    (models.rollout.run_episodes, with a progress bar)."""
    env_id = env_id or agent.config.env_id
    if not env_id:
        raise AgentError("the agent does not name an environment (env_id); choose one (cli.py --env ID, or Environment on the home page).")
    bar, report = _bar(n_envs, f"evaluate {agent.kind} on {env_id}", progress)
    try:
        return rollout.run_episodes(agent, n_envs, target_returns, seed=seed, sample=sample, env_id=env_id,
                                    progress=report).returns
    finally:
        bar.close()


def evaluate(agent: Agent, target_returns=None, episodes: int = 10, seed: int = 0, sample: bool = True,
             progress: bool = True) -> list[dict]:
    """results: [{target_return, mean_return, std_return, ci_low, ci_high, episodes, returns}] per target."""
    if episodes < 1:
        raise ValueError(f"episodes must be at least 1, got {episodes}.")
    targets = list(target_returns) if target_returns is not None and agent.has("return_conditioned") else [None]
    for msg in check_targets(agent, [t for t in targets if t is not None]):
        warnings.warn(msg, stacklevel=2)
    per_env = np.repeat(np.asarray([t if t is not None else np.nan for t in targets], float), episodes)
    returns = run_episodes(agent, len(per_env), per_env if targets[0] is not None else None, seed, sample, progress)
    results = []
    for i, t in enumerate(targets):
        r = returns[i * episodes:(i + 1) * episodes]
        lo, hi = bootstrap_ci(r, seed=seed)
        results.append({"target_return": t, "mean_return": float(r.mean()), "std_return": float(r.std()),
                        "ci_low": lo, "ci_high": hi, "episodes": episodes, "returns": r.round(4).tolist()})
    return results


def prediction_error(model, ds: Dataset, horizon: int = 10, n_starts: int = 64, seed: int = 0) -> dict:
    """Open-loop error of a one-step dynamics model: from a logged state, feed the logged actions and its own
    predictions back for `horizon` steps; mean L2 to the logged observations at each horizon (raw units)."""
    check_dataset(model, ds)
    rng = np.random.default_rng(seed)
    long_enough = np.flatnonzero(ds.episode_lengths > horizon)
    if not len(long_enough):
        raise AgentError(f"{ds.source} has no episode longer than {horizon} steps.")
    errors = []
    for e in rng.choice(long_enough, size=n_starts):
        ep = ds.episode(int(e))
        t = int(rng.integers(0, len(ep) - horizon))
        pred, _ = model.rollout_open_loop(ep.observations[t], ep.actions[t:t + horizon])
        errors.append(np.linalg.norm(pred - ep.observations[t + 1:t + 1 + horizon], axis=-1))
    mean = np.mean(errors, axis=0)
    return {"horizon": list(range(1, horizon + 1)), "mean_l2": mean.round(5).tolist(), "n_starts": n_starts, "seed": seed}
