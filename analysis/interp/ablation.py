"""Ablation: switch off attention heads and MLPs of a transformer agent and measure what changes.

An ablation is a list of components, written as strings: `L{layer}H{head}` (head k of block i: its part of
`blocks.{i}.attn.head_out`), `L{layer}H*` (every head of that block) and `L{layer}MLP` (`blocks.{i}.mlp.out`).
`parse_ablation` checks them against the agent (an unknown layer or head, or an empty set, is one sentence).

Two modes:
- "zero": the component's output is replaced by zeros (a head's output excludes the projection bias, so a
  zeroed head removes exactly its own contribution to the residual stream);
- "mean": by its mean over a sample of the dataset's windows (every real token of `n_windows` windows drawn
  with `seed`; one vector per head or MLP, the same at every position and token type, so it also applies
  inside a KV-cached rollout, which feeds a step's new tokens only). Computed once per (agent, dataset,
  sample) through analysis/core/cache.cached.

The ablation is an intervention per call (models/activations.py): nothing is written to the agent.

Effects of a Decision Transformer ablation:
- on data (`ablation_on_data`): action accuracy (discrete; argmax = logged action) or action MSE (continuous,
  in [-1, 1]) over `n_steps` logged steps drawn as analysis/behaviour/context.context_accuracy draws them (same seed,
  same steps, windows of the receptive field), intact and ablated, each with a bootstrap 95% CI, and the
  paired difference (ablated - intact, per step) with its CI;
- in the environment (`ablation_in_env`): mean return over `episodes` episodes intact and ablated, on the
  same reset seeds and the same action draws (common random numbers, models/rollout.run_episodes with
  `interventions`), each with a CI, and the paired difference per episode.

The components, their means and the interventions: analysis/interp/components.py (shared with the Trajectory
Transformer's ablation and patching, analysis/interp/tt_causal.py).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from models.base import inference
from models.errors import AgentError
from models.checks import check_dataset
from models.rollout import episode_limit, episode_uniforms, run_episodes

from analysis.core.cache import cached, report, tee
from analysis.core.inputs import (action_scores, default_target, receptive_field, step_windows,
                                  training_data)
from analysis.interp.components import Estimate, build_interventions, difference, estimate, layout


def default_ablation(agent) -> list[str]:
    """The last block's heads: the parts that write the output's residual stream last."""
    n_layer, _ = layout(agent)
    return [f"L{n_layer - 1}H*"]


@dataclass
class DataEffect:
    """Action prediction on logged steps, intact vs ablated (same steps)."""

    metric: str                   # "accuracy" | "mse"
    intact: Estimate
    ablated: Estimate
    difference: Estimate          # ablated - intact, paired per step
    changed: float                # discrete: share of steps whose argmax action changes; continuous: mean |change|
    n_steps: int
    context: int                  # steps of history per window (the receptive field)
    steps: np.ndarray = field(repr=False, default=None)
    scores_intact: np.ndarray = field(repr=False, default=None)    # per step: 1/0 correct or squared error
    scores_ablated: np.ndarray = field(repr=False, default=None)


@dataclass
class EnvEffect:
    """Return in the environment, intact vs ablated (same reset seeds and action draws per episode)."""

    env_id: str
    target_return: float
    intact: Estimate
    ablated: Estimate
    difference: Estimate          # ablated - intact, paired per episode
    returns_intact: np.ndarray = field(repr=False, default=None)
    returns_ablated: np.ndarray = field(repr=False, default=None)

    @property
    def episodes(self) -> int:
        return self.intact.n


@dataclass
class AblationResult:
    agent: str
    components: list[str]         # labels, e.g. ["L2H0", "L2MLP"]
    mode: str
    seed: int
    data: DataEffect | None = None
    env: EnvEffect | None = None
    note: str = ""

    def to_frame(self) -> pd.DataFrame:
        rows = []
        base = {"model": self.agent, "ablate": " ".join(self.components), "mode": self.mode, "seed": self.seed}
        if self.data is not None:
            d = self.data
            measure = "action accuracy" if d.metric == "accuracy" else "action MSE"
            for cond, e in (("intact", d.intact), ("ablated", d.ablated), ("ablated - intact", d.difference)):
                rows.append({**base, "measure": measure, "condition": cond, "value": e.mean, "ci_low": e.ci_low,
                             "ci_high": e.ci_high, "n": e.n, "unit": "logged steps"})
        if self.env is not None:
            e_ = self.env
            for cond, e in (("intact", e_.intact), ("ablated", e_.ablated), ("ablated - intact", e_.difference)):
                rows.append({**base, "measure": "return", "condition": cond, "value": e.mean, "ci_low": e.ci_low,
                             "ci_high": e.ci_high, "n": e.n, "unit": f"episodes ({e_.env_id}, target {e_.target_return:g})"})
        return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------------
# Decision Transformer: effects on data and in the environment
# ---------------------------------------------------------------------------------------------------
def _check_dt(agent) -> None:
    if agent.has("tokens"):
        raise AgentError("a Trajectory Transformer predicts tokens, not actions: its ablation is the figure tt_ablation "
                         "(analysis.interp.tt_causal.tt_ablation).")
    if not (agent.has("action") and agent.has("attention")):
        raise AgentError(f"ablation switches off attention heads and MLPs of a Decision Transformer; a {agent.kind} "
                         "agent has none.")


def action_outputs(agent, inputs: dict, interventions: dict | None = None) -> torch.Tensor:
    """A DT's action output at each window's last step [B, ...] under `interventions` (None or {}: the plain
    numbers of analysis.core.inputs.last_step_outputs). Only what the last s_t token reads is computed."""
    if agent.has("partial_forward"):
        out, _ = agent.run_with_cache(inputs, [], interventions or None, last_state_only=True)
    else:   # no partial forward: the full forward
        out, _ = agent.run_with_cache(inputs, [], interventions or None)
    return out.action_preds[:, -1]


def data_steps(dataset, n_steps: int, seed: int) -> np.ndarray:
    """The logged steps analysis.behaviour.context.context_accuracy scores (uniform, without replacement, sorted)."""
    n = dataset.n_transitions
    return np.sort(np.random.default_rng(seed).choice(n, size=min(int(n_steps), n), replace=False))


def _outputs(agent, data, steps, interventions, batch_size: int, what: str, start: float = 0.0) -> torch.Tensor:
    """Action outputs at `steps` in batches; progress reported from `start` to `start` + 0.5."""
    out, ctx = [], receptive_field(agent)
    for i in range(0, len(steps), batch_size):
        out.append(action_outputs(agent, step_windows(agent, data, steps[i:i + batch_size], context=ctx), interventions))
        done = min(i + batch_size, len(steps))
        report(start + 0.5 * done / len(steps), f"{what}: {done}/{len(steps)} steps")
    return torch.cat(out)


def ablation_on_data(agent, dataset, interventions: dict, n_steps: int = 4000, seed: int = 0,
                     batch_size: int = 256) -> DataEffect:
    """Action accuracy (discrete) or MSE (continuous) on `n_steps` logged steps with and without `interventions`
    (ablation_interventions; {} compares the plain forward with itself)."""
    _check_dt(agent)
    check_dataset(agent, dataset)
    if int(n_steps) < 1:
        raise ValueError(f"n_steps must be at least 1, got {n_steps}.")
    steps = data_steps(dataset, n_steps, seed)
    data = training_data(agent, dataset)
    with inference(agent):
        # the intact outputs are the same for every ablation: computed once per (agent, dataset, steps)
        intact = torch.as_tensor(cached("ablation_intact_outputs",
                                        lambda: _outputs(agent, data, steps, None, batch_size, "intact").numpy(),
                                        agent, dataset, n_steps=int(n_steps), seed=int(seed)))
        ablated = _outputs(agent, data, steps, interventions, batch_size, "ablated", start=0.5)
    s0, s1 = action_scores(agent, dataset, steps, intact), action_scores(agent, dataset, steps, ablated)
    if agent.discrete:
        changed = float((intact.argmax(-1) != ablated.argmax(-1)).double().mean())
    else:
        changed = float((ablated - intact).abs().mean())
    return DataEffect("accuracy" if agent.discrete else "mse", estimate(s0, seed), estimate(s1, seed),
                      difference(s1, s0, seed), changed, len(steps), receptive_field(agent), steps, s0, s1)


def ablation_in_env(agent, interventions: dict, episodes: int = 8, target_return: float | None = None, seed: int = 0,
                    sample: bool = True, progress=None) -> EnvEffect:
    """Mean return over `episodes` episodes intact and with `interventions`, on reset seeds seed + i and the same
    per-episode action draws on both sides (models/rollout.episode_uniforms), with CIs and the paired difference."""
    from models.env_choice import can_act

    _check_dt(agent)
    if int(episodes) < 1:
        raise ValueError(f"episodes must be at least 1, got {episodes}.")
    if not can_act(agent):
        raise AgentError("the agent names no environment that can be made here (choose one on the home page, or "
                         "cli.py --env ID); the effect on data needs none (episodes=0).")
    n = int(episodes)
    target = default_target(agent) if target_return is None else float(target_return)
    env_id = agent.config.env_id
    u = episode_uniforms(n, episode_limit(env_id, agent) + 1, seed)
    prog = tee(progress)

    def returns(k: int, iv) -> np.ndarray:
        def step(f, m):
            prog((k + f) / 2, f"{'ablated' if k else 'intact'}: {m}")
        return run_episodes(agent, n, np.full(n, target), seed=seed, uniforms=u, sample=sample, interventions=iv,
                            progress=step).returns
    # the intact episodes are the same for every ablation: run once per (agent, episodes, target, seed, sample)
    r0 = cached("ablation_intact_returns", lambda: returns(0, None), agent, None, episodes=n, target=target,
                seed=int(seed), sample=bool(sample))
    r1 = returns(1, interventions)
    return EnvEffect(env_id, target, estimate(r0, seed), estimate(r1, seed), difference(r1, r0, seed), r0, r1)


def ablation(agent, dataset, ablate, mode: str = "zero", n_steps: int = 4000, episodes: int = 0,
             target_return: float | None = None, seed: int = 0, n_windows: int = 256, progress=None,
             name: str | None = None) -> AblationResult:
    """Ablate `ablate` (parse_ablation's strings) of a Decision Transformer in `mode` ("zero" or "mean"; means over
    `n_windows` of the dataset's windows drawn with `seed`) and measure the effect on action prediction over
    `n_steps` logged steps and, with episodes > 0, on return in the environment."""
    _check_dt(agent)
    components, iv = build_interventions(agent, dataset, ablate, mode, n_windows, seed)
    data = ablation_on_data(agent, dataset, iv, n_steps, seed) if dataset is not None and int(n_steps) > 0 else None
    env = ablation_in_env(agent, iv, episodes, target_return, seed, progress=progress) if int(episodes) > 0 else None
    return AblationResult(name or agent_name(agent), [c.label for c in components], mode, int(seed), data, env)


def agent_name(agent) -> str:
    """How the figures name the agent (as analysis/behaviour/context does)."""
    return f"{agent.kind.upper()} (K={agent.context_length})"
