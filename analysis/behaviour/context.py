"""Context ablation: does a Decision Transformer use its history? Truncate what it sees to the last K'
steps at inference and measure (a) the return it earns in the environment and (b) how well it predicts
the logged actions, beside separately trained agents (a K = 1 DT, a GRU, a Markov MLP).

The truncation is an attention mask: the window holds the agent's receptive field (n_layer * K steps for
a native banded DT, what its cached rollout computes; K for an HF import), and keys older than K' steps
are masked out, exactly as a left-padded window of K' steps (timesteps stay absolute). K' = receptive
field reproduces the agent's own rollout action for action (tests/test_context.py).

(a) runs every K' x episode in one batched vector env (models/rollout.py; the DT rollout's `context`
argument does the masking): episode j starts from reset seed `seed + j` and draws its discrete actions
from the same uniforms whatever K' it runs with (common random numbers), so differences between K' come
from the context, not the luck of the draw. Reference agents are evaluated
with analysis.behaviour.evaluate.evaluate on the same seeds.
"""
from __future__ import annotations

import inspect
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from models.errors import AgentError
from models.base import inference
from models.checks import check_dataset
from models.loading import capabilities_of
from models.rollout import episode_limit, run_episodes
from models.shipped import AGENT_DIR

from analysis.core.cache import tee
from analysis.core.stats import bootstrap_ci
from analysis.core.inputs import (action_scores, default_target, last_step_outputs, receptive_field, step_windows,
                                  training_data, window_rows)

SHIPPED_AGENTS = AGENT_DIR


@dataclass
class Reference:
    """A separately trained agent measured alongside (a horizontal line on the figures)."""

    name: str
    kind: str                    # its model family, for labels
    return_conditioned: bool     # asked for the same target return as the agent measured
    markov: bool                 # acts on the current observation alone (the Markov reference)
    context: int | None          # steps of history it was trained with (GRU: None = the whole episode)
    mean: float
    ci_low: float
    ci_high: float
    values: np.ndarray = field(repr=False, default=None)


@dataclass
class ContextReturns:
    """Return in the environment vs the context K' a DT sees at inference."""

    agent: str
    contexts: np.ndarray          # [C]
    returns: np.ndarray           # [C, episodes]
    mean: np.ndarray              # [C]
    ci_low: np.ndarray
    ci_high: np.ndarray
    target_return: float | None
    trained_context: int
    receptive_field: int
    episodes: int
    seed: int
    references: list[Reference] = field(default_factory=list)

    def to_frame(self) -> pd.DataFrame:
        return _frame(self, "mean_return", self.mean, lambda: {"episodes": self.episodes, "target_return": self.target_return},
                      lambda r: {"episodes": len(r.values),
                                 "target_return": self.target_return if r.return_conditioned else None})


@dataclass
class ContextAccuracy:
    """Action prediction on logged data vs the context K' (discrete: accuracy; continuous: MSE in [-1, 1])."""

    agent: str
    metric: str                   # "accuracy" | "mse"
    contexts: np.ndarray          # [C]
    value: np.ndarray             # [C]
    ci_low: np.ndarray
    ci_high: np.ndarray
    trained_context: int
    receptive_field: int
    n_steps: int
    seed: int
    references: list[Reference] = field(default_factory=list)

    def to_frame(self) -> pd.DataFrame:
        return _frame(self, self.metric, self.value, lambda: {"n_steps": self.n_steps}, lambda r: {"n_steps": self.n_steps})


def _frame(result, column: str, values, extra, ref_extra) -> pd.DataFrame:
    """One row per context K' of the agent, then one per reference model (a Markov or recurrent baseline)."""
    rows = [{"model": result.agent, "context": int(k), column: v, "ci_low": lo, "ci_high": hi, **extra(), "reference": False}
            for k, v, lo, hi in zip(result.contexts, values, result.ci_low, result.ci_high)]
    rows += [{"model": r.name, "context": r.context, column: r.mean, "ci_low": r.ci_low, "ci_high": r.ci_high,
              **ref_extra(r), "reference": True} for r in result.references]
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------------
def _check_dt(agent) -> None:
    if not agent.has("step_tokens"):
        raise AgentError(f"context ablation truncates a Decision Transformer's history; got a {agent.kind} agent.")


def default_contexts(agent) -> list[int]:
    """1, 2, 4, 8, ... up to the receptive field, plus the trained K and the receptive field itself
    (capped at the longest episode, max_ep_len: more history than that does not exist)."""
    cap = max(1, min(receptive_field(agent), int(agent.config.max_ep_len)))
    ks = {1, min(agent.context_length, cap), cap}
    k = 2
    while k < cap:
        ks.add(k)
        k *= 2
    return sorted(ks)


def _check_contexts(agent, contexts) -> np.ndarray:
    ks = np.asarray(sorted(set(int(k) for k in (contexts if contexts is not None else default_contexts(agent)))), np.int64)
    if not len(ks) or ks.min() < 1:
        raise ValueError("contexts must be at least 1 step.")
    return ks


def _agent_name(agent, name: str | None = None) -> str:
    return name or f"{agent.kind.upper()} (K={agent.context_length})"


# ---------------------------------------------------------------------------------------------------
# (a) return vs context in the environment
# ---------------------------------------------------------------------------------------------------
def truncated_rollout(agent, contexts_per_env, env_seeds, target_returns, uniforms: np.ndarray | None = None,
                      sample: bool = True, env_id: str | None = None, record_actions: bool = False,
                      progress=None):
    """One batched vector-env rollout of a DT whose env i sees only its last contexts_per_env[i] steps
    (models.rollout.run_episodes with the DT rollout's `context`).

    env_seeds [n] reset seeds; target_returns [n] (raw units); uniforms [n, T] the discrete draws (as
    DTRollout's `uniforms`). Returns the episode returns [n] (and the actions [T, n] if record_actions,
    zeros for an env past its episode's end)."""
    _check_dt(agent)
    env_id = env_id or agent.config.env_id
    if not env_id:
        raise AgentError("the agent does not name an environment (env_id); choose one (cli.py --env ID, or Environment on the home page).")
    ks = np.asarray(contexts_per_env, np.int64)
    n = len(ks)
    if uniforms is None:
        uniforms = np.random.default_rng(0).random((n, episode_limit(env_id, agent)), dtype=np.float32)
    ep = run_episodes(agent, n, np.broadcast_to(np.asarray(target_returns, float), (n,)), env_seeds=env_seeds,
                      env_id=env_id, sample=sample, uniforms=uniforms, context=ks,
                      record=("actions",) if record_actions else (), progress=tee(progress))
    return (ep.returns, np.moveaxis(ep.actions, 0, 1)) if record_actions else ep.returns


def evaluate_reference(agent, name: str, episodes: int, seed: int, target_return: float | None) -> Reference:
    """Mean return (bootstrap 95% CI) of a separately trained agent on the same reset seeds."""
    from analysis.behaviour.evaluate import evaluate

    res = evaluate(agent, [target_return] if agent.has("return_conditioned") else None, episodes=episodes, seed=seed,
                   progress=False)[0]
    ctx = None if agent.has("recurrent") else agent.context_length
    return Reference(name, agent.kind, agent.has("return_conditioned"), agent.has("markov"), ctx, res["mean_return"],
                     res["ci_low"], res["ci_high"], np.asarray(res["returns"]))


def context_returns(agent, contexts=None, episodes: int = 8, target_return: float | None = None, seed: int = 0,
                    references: dict | None = None, sample: bool = True, progress=None,
                    name: str | None = None) -> ContextReturns:
    """Mean return (bootstrap 95% CI over episodes) for each context K' in one batched rollout, plus
    `references` {name: agent} evaluated on the same seeds."""
    _check_dt(agent)
    ks = _check_contexts(agent, contexts)
    if episodes < 1:
        raise ValueError(f"episodes must be at least 1, got {episodes}.")
    target = default_target(agent) if target_return is None else float(target_return)
    per_env_k = np.repeat(ks, episodes)
    ep_of_env = np.tile(np.arange(episodes), len(ks))
    T = int(agent.config.max_ep_len) + 1
    u = np.random.default_rng(seed).random((episodes, T), dtype=np.float32)[ep_of_env]   # same draws per episode
    returns = truncated_rollout(agent, per_env_k, seed + ep_of_env, np.full(len(per_env_k), target), u, sample,
                                progress=progress).reshape(len(ks), episodes)
    cis = np.array([bootstrap_ci(r, seed=seed) for r in returns])
    refs = [evaluate_reference(a, ref_name, episodes, seed, target) for ref_name, a in (references or {}).items()]
    return ContextReturns(_agent_name(agent, name), ks, returns, returns.mean(1), cis[:, 0], cis[:, 1], target,
                          agent.context_length, receptive_field(agent), episodes, seed, refs)


# ---------------------------------------------------------------------------------------------------
# (b) action prediction vs context on logged data
# ---------------------------------------------------------------------------------------------------
def policy_outputs(agent, dataset, steps: np.ndarray, context: int | None = None, batch_size: int = 256,
                   data=None) -> torch.Tensor:
    """The agent's action output at absolute dataset steps: logits [n, n_actions] (discrete) or actions in
    [-1, 1] [n, act_dim]. DT: windows of `context` steps (default: its receptive field); GRU: from the
    episode's first step; MLP: the current observation."""
    with inference(agent):
        data = data if data is not None else training_data(agent, dataset)   # normalised once per agent, not per K
        if agent.has("step_tokens"):
            ctx = int(context or receptive_field(agent))
            batch_size = window_rows(agent, data, batch_size, ctx)   # frame stacks: a batch bounded by bytes
            out = [last_step_outputs(agent, step_windows(agent, data, steps[i:i + batch_size], context=ctx)).action_preds[:, -1]
                   for i in range(0, len(steps), batch_size)]
            return torch.cat(out)
        if agent.has("markov"):
            out = agent(torch.from_numpy(data.obs[steps]))
        elif agent.has("recurrent"):
            out = _gru_outputs(agent, data, steps, batch_size)
        else:
            raise AgentError(f"a {agent.kind} agent does not predict actions.")
        return out if agent.discrete else torch.tanh(out)


def context_outputs(agent, dataset, steps: np.ndarray, contexts, batch_size: int = 256, data=None) -> dict[int, torch.Tensor]:
    """{K': policy_outputs(agent, dataset, steps, K')} for a DT: the windows are gathered and their states embedded once,
    at the longest K', and each shorter window is the last K' steps of it (left padding and absolute timesteps make
    them the same windows: tests/test_context.py). Per K' on a 100k-step Atari file, gathering and the conv encoder
    ran once per context length (2.9 s of a 4.4 s accuracy curve). DTI-padded agents (pad steps are states) run
    each K' on its own, and so does a DT whose forward takes no state_embeds (a user's subclass)."""
    ks = sorted({int(k) for k in contexts})
    with inference(agent):
        data = data if data is not None else training_data(agent, dataset)
        if agent.cfg.padding == "dti" or "state_embeds" not in inspect.signature(agent.forward).parameters:
            return {k: policy_outputs(agent, dataset, steps, k, batch_size, data) for k in ks}
        kmax, parts = ks[-1], []
        rows = window_rows(agent, data, batch_size, kmax)
        for i in range(0, len(steps), rows):
            w = step_windows(agent, data, steps[i:i + rows], context=kmax, embed=True)
            if w["states"] is not None:   # vector observations: embedded here (a cheap Linear), sliced below alike
                w["states"], w["state_embeds"] = None, agent.embed_state(w["states"])
            parts.append(w)
        full = {name: torch.cat([p[name] for p in parts]) for name in parts[0] if parts[0][name] is not None}
        return {k: torch.cat([last_step_outputs(agent, {"states": None, **{name: v[i:i + batch_size, -k:] for name, v in
                                                                           full.items()}}).action_preds[:, -1]
                              for i in range(0, len(steps), batch_size)])
                for k in ks}


def _gru_outputs(agent, data, steps: np.ndarray, batch_size: int) -> torch.Tensor:
    """A GRU's outputs at `steps`, each from its episode's first step: the episodes run together, right-padded
    (the recurrence never looks ahead, so padding changes nothing before it) and only as far as the last step
    asked for. One call per batch of episodes instead of one per episode (167 calls were 3 s of a page)."""
    ep_of = np.searchsorted(data.starts, steps, side="right") - 1
    uniq = np.unique(ep_of)
    need = np.array([int(steps[ep_of == e].max() - data.starts[e]) + 1 for e in uniq])
    order = np.argsort(need)
    out = torch.zeros(len(steps), int(agent.config.n_actions) if agent.discrete else agent.act_dim)   # the head's width
    for i in range(0, len(order), batch_size):
        batch = order[i:i + batch_size]
        T = int(need[batch].max())
        idx = data.starts[uniq[batch]][:, None] + np.arange(T)[None, :]
        valid = np.arange(T)[None, :] < need[batch][:, None]
        idx = np.where(valid, idx, data.starts[uniq[batch]][:, None])
        acts = torch.as_tensor(data.actions[idx])
        y, _ = agent(torch.from_numpy(np.where(valid[..., None], data.obs[idx], 0).astype(np.float32)),
                     agent.prev_actions(acts))
        for b, e in enumerate(uniq[batch]):
            rows = np.flatnonzero(ep_of == e)
            out[rows] = y[b, steps[rows] - data.starts[e]]
    return out


def context_accuracy(agent, dataset, contexts=None, n_steps: int = 4000, seed: int = 0,
                     references: dict | None = None, name: str | None = None) -> ContextAccuracy:
    """Action prediction on `n_steps` logged steps (drawn uniformly, seeded) for each context K' (windows
    truncated to K' with analysis.core.inputs.step_windows), with bootstrap 95% CIs over steps; `references`
    {name: agent} scored on the same steps."""
    _check_dt(agent)
    check_dataset(agent, dataset)
    ks = _check_contexts(agent, contexts)
    n = dataset.n_transitions
    steps = np.sort(np.random.default_rng(seed).choice(n, size=min(int(n_steps), n), replace=False))
    vals, cis = [], []
    data = training_data(agent, dataset)
    outputs = context_outputs(agent, dataset, steps, ks, data=data)
    for k in ks:
        s = action_scores(agent, dataset, steps, outputs[int(k)])
        vals.append(s.mean())
        cis.append(bootstrap_ci(s, seed=seed))
    refs = []
    for ref_name, ref in (references or {}).items():
        check_dataset(ref, dataset)
        s = action_scores(ref, dataset, steps, policy_outputs(ref, dataset, steps))
        lo, hi = bootstrap_ci(s, seed=seed)
        ctx = None if ref.has("recurrent") else ref.context_length
        refs.append(Reference(ref_name, ref.kind, ref.has("return_conditioned"), ref.has("markov"), ctx, float(s.mean()),
                              lo, hi, s))
    cis = np.array(cis)
    return ContextAccuracy(_agent_name(agent, name), "accuracy" if agent.discrete else "mse", ks, np.array(vals),
                           cis[:, 0], cis[:, 1], agent.context_length, receptive_field(agent), len(steps), seed, refs)


# ---------------------------------------------------------------------------------------------------
# references: shipped agents of the same environment, and a Markov MLP
# ---------------------------------------------------------------------------------------------------
def _shipped_candidates(agent, root: Path) -> list[tuple[Path, dict]]:
    """(directory, config.json) of every shipped agent acting in the agent's environment with its observations,
    agents without an action head (dynamics models, TTs) left out: read from config.json alone, nothing loaded."""
    out = []
    for d in sorted(p for p in root.iterdir() if (p / "config.json").is_file()) if root.is_dir() else []:
        try:
            c = json.loads((d / "config.json").read_text())
        except (OSError, ValueError):
            continue
        if c.get("env_id") == agent.config.env_id and c.get("obs_dim") == agent.obs_dim \
                and "action" in capabilities_of(c.get("kind")):
            out.append((d, c))
    return out


def shipped_reference_capabilities(agent, root: Path = SHIPPED_AGENTS) -> set[str]:
    """What any of shipped_references(agent) can do (models.base.CAPABILITIES), from the config.json files alone
    (nothing loaded)."""
    return set().union(*(capabilities_of(c.get("kind")) for _, c in _shipped_candidates(agent, root)))


def shipped_references(agent, exclude: str | None = None, root: Path = SHIPPED_AGENTS) -> dict:
    """Shipped agents that act in the same environment with the same observations (read from config.json
    first, so only those are loaded), except dynamics models and the agent itself."""
    from models import load_agent

    out = {}
    for d, _ in _shipped_candidates(agent, root):
        if d.name == exclude:
            continue
        ref = load_agent(d)
        if ref.state_dict().keys() == agent.state_dict().keys() and all(
                torch.equal(a, b) for a, b in zip(ref.state_dict().values(), agent.state_dict().values())):
            continue   # the agent under study itself
        out[d.name] = ref
    return out


def train_mlp_reference(dataset, steps: int = 2000, seed: int = 0):
    """A Markov reference (pi(a_t | o_t), K = 1) trained on the dataset when none is shipped (~5 s)."""
    from models.train import train

    return train("mlp", dataset, steps=steps, seed=seed, progress=False)
