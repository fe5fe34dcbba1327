"""A recipe's "train until" rule (issue 24, item 2): the Trajectory Transformer of the compounding-error comparison
trains in chunks, and after each chunk its one-step error on validation episodes is measured against the one-step
model's; it stops at the first chunk where it is at least as good, or at the cap.

A recipe opts in with `until={"reference": RECIPE, "chunk": STEPS, "episodes": E, "n_starts": N}` (its `steps` is
the cap). The reference (a dynamics-model recipe: ~20 s of training) is trained by seed_runs.train_recipe with the
same seed just before, so a piece needs nothing from another piece. Validation episodes are collected fresh with seed VALIDATION_SEED + seed: never the
training data's, nor the finding's held-out episodes (reproduce.HELD_OUT_SEED + seed), so the stopping rule never
sees what the finding measures. Both models are measured from the same start states, each given its own context of
logged transitions (the TT: K - 1; a one-step model none). What happened goes in the checkpoint's
training["until"]: the rule, the reference's error, every check, whether it was reached.
"""
from __future__ import annotations

import numpy as np

VALIDATION_SEED = 2_000_000
RULE = ("trained in chunks; after each, the mean one-step L2 error (raw obs units) on validation episodes, from the "
        "same start states as the reference one-step model; stopped at the first chunk where it is <= the reference's, "
        "or at the cap")


def validation_starts(dataset, context: int, n_starts: int, seed: int) -> np.ndarray:
    """`n_starts` steps drawn (seeded) among those with `context` logged transitions before them and one after."""
    remaining = np.repeat(dataset.episode_ends, dataset.episode_lengths) - np.arange(dataset.n_transitions) - 1
    valid = np.flatnonzero((dataset.timesteps >= context) & (remaining >= 1))
    if not len(valid):
        raise ValueError(f"the validation episodes have no step with {context} steps before it and one after it.")
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(valid, size=min(int(n_starts), len(valid)), replace=False))


def model_context(agent) -> int:
    """The logged transitions a model reads before a start: a TT's K - 1, a dynamics model's history."""
    if agent.has("tokens"):
        return max(agent.context_length - 1, 0)
    return int(getattr(agent.cfg, "history", 0) or 0)


def one_step_error(agent, dataset, starts: np.ndarray) -> float:
    """Mean L2 (raw obs units) of the model's prediction of the next observation from `starts`, each given
    model_context(agent) logged transitions (the starts must have that many before them)."""
    from analysis.behaviour.predictions import open_loop

    obs, _ = open_loop(agent, dataset, starts, 1, model_context(agent))
    return float(np.linalg.norm(obs[:, 0] - dataset.observations[starts + 1].astype(np.float64), axis=-1).mean())


def validation_data(env_id: str, seed: int, episodes: int):
    from envs.behaviour import collect

    return collect(env_id, int(episodes), seed=VALIDATION_SEED + int(seed), progress=False)


def train_until(r: dict, seed: int, ds, reference, steps: int, chunk: int, progress: bool = True,
                dataset_name: str | None = None):
    """Recipe `r` (models/recipes.py, with an `until` rule) trained with `seed` on `ds` in chunks of `chunk` steps up
    to `steps` (the cap), stopped at the first chunk whose validation one-step error is <= that of `reference` (the
    rule's one-step model, trained on the same data with the same seed: seed_runs.train_recipe does)."""
    from models.train import train

    u = r["until"]
    val = validation_data(ds.env_id, seed, u.get("episodes", 16))
    context = max(int(r.get("context") or 1) - 1, model_context(reference))
    starts = validation_starts(val, context, u.get("n_starts", 256), seed)
    target = one_step_error(reference, val, starts)
    checks = []

    def check(agent, step):
        e = one_step_error(agent, val, starts)
        checks.append({"step": int(step), "one_step_error": e})
        return f"validation one-step error {e:.4f} (reference {target:.4f})", e <= target

    agent = train(r["kind"], ds, steps=steps, seed=seed, context_length=r.get("context"), batch_size=r.get("batch_size"),
                  lr=r.get("lr"), hparams=r.get("hparams"), eval_every=chunk, eval_fn=check, progress=progress,
                  dataset_name=dataset_name)
    trained = agent.config.training["steps"]
    if not checks or checks[-1]["step"] != trained:     # the cap: train() checks before the last step only
        check(agent, trained)
    final = checks[-1]["one_step_error"]
    agent.config.training["until"] = {
        "rule": RULE, "reference": u["reference"], "reference_one_step_error": target, "one_step_error": final,
        "reached": bool(final <= target), "chunk": int(chunk), "cap": int(steps), "checks": checks,
        "validation": {"env_id": ds.env_id, "seed": VALIDATION_SEED + int(seed), "episodes": int(val.n_episodes),
                       "n_starts": int(len(starts)), "context": int(context)}}
    return agent
