"""Continuous offline value learners (kind "cq"): twin Q(s, a), a state value V(s) and a policy, trained on a Dataset
through models/train.py's loop.

- hparams["method"] "iql" (Kostrikov et al. 2021): V is the `expectile` of min(Q1, Q2)_target over the data's actions,
  Q by TD on V(s'), the policy by advantage-weighted regression (weights exp(beta * (Q - V)), capped at max_weight)
  of a Gaussian over [-1, 1] action units around tanh(mean).
- "cql" (Kumar et al. 2020, CQL(H) on SAC): Q by TD on min Q_target(s', a' ~ pi) (no entropy in the backup, as CORL)
  plus alpha * (logsumexp over sampled actions - Q(s, a_data)), the sampled actions `n_sampled` each of uniform,
  pi(.|s) and pi(.|s'), importance-weighted; a tanh-Gaussian SAC actor with its temperature tuned to entropy -act_dim
  (`log_temperature`); alpha fixed. V(s) is regressed on min Q_target(s, a ~ pi(s)), so it estimates
  E_{a~pi} min Q(s, a): the same V(s) head for both methods.

Why one loss and one optimiser serve four learners: each part's loss reaches only its own parameters (targets,
weights and the actor's Q are computed without gradient to the others: `_frozen`), and Adam is per parameter, so
one AdamW over the sum equals one per part with the same lr; the loop's global gradient clip is set wide (hparams'
TRAIN_DEFAULTS["cq"]) so that one part's gradient does not scale another's. The target networks are training state,
kept in what `prepare_training` returns (nothing on the agent) and moved by Polyak at the start of each `loss`, which
is the update after each optimiser step in the usual order.

Units: observations raw in `episode_values` / rollouts (normalised here), actions in env units in and out ([-1, 1]
inside, by the config's action bounds as the DT's); the networks predict values in reward / reward_scale units and
every value that leaves the agent (forward, `episode_values`, `value()`, the heads "head.q" / "head.v") is in raw
return units.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from .activations import ActivationRun
from .base import Agent, AgentConfig, RolloutBase, inference
from .baselines import _mlp, run_hidden
from .errors import AgentError
from .hparams import CQHparams, resolve
from .windows import TrainingData

METHODS = ("iql", "cql")
LOG_STD = (-5.0, 2.0)
NETS = ("q1", "q2")


def expectile_loss(u: torch.Tensor, tau: float) -> torch.Tensor:
    """mean |tau - 1(u < 0)| u^2: minimised by the tau-expectile of the targets (u = target - prediction); at 0.5 it
    is half the mean squared error, minimised by the mean."""
    return (torch.abs(tau - (u < 0).float()) * u.square()).mean()


def _run(net: nn.Sequential, x: torch.Tensor, run: ActivationRun | None, prefix: str) -> torch.Tensor:
    """net(x), recording `{prefix}.hidden.{i}` after each ReLU when a run is given."""
    return run_hidden(net, x, run, f"{prefix}.")


@dataclass
class QTraining:
    """One training run's state: the data and the target Q networks' parameters (made by `prepare_training`)."""

    data: TrainingData
    valid: np.ndarray        # steps with a next state in their episode, or terminated
    following: np.ndarray    # [N] the step after each (itself at an episode's last step)
    target: dict             # {"q1": {name: tensor}, "q2": {...}}


class ContinuousQ(Agent):
    """Twin Q(s, a), V(s) and a tanh-Gaussian policy over continuous actions (IQL or CQL, hparams["method"]).

    Named activations (`run_with_cache((obs, actions))`: normalised observations [..., obs_dim], actions [..., act_dim]
    in env units, or None for the policy's own deterministic action):
      policy.hidden.{i}  [..., hidden]      the actor's hidden layer i after its ReLU
      head.policy        [..., 2 * act_dim]  the actor's output: the mean before tanh, then log std (before clamping)
      q1.hidden.{i}, q2.hidden.{i}  [..., hidden]  each Q network's hidden layer i
      head.q             [...]              min(Q1, Q2) of the given action, raw return units
      v.hidden.{i}       [..., hidden]      the value network's hidden layer i
      head.v             [...]              V(s), raw return units
    """

    family = "a continuous value learner (IQL / CQL)"
    capabilities = frozenset({"acts", "markov", "q_values"})

    def __init__(self, config: AgentConfig):
        config = replace(config, hparams=resolve("cq", config.hparams))
        if config.discrete:
            raise AgentError("a cq agent (IQL / CQL) acts with continuous actions; this config says discrete is true.")
        super().__init__(config)
        self.cfg = h = CQHparams(**config.hparams)
        if h.method not in METHODS:
            raise AgentError(f"hparams.method is {h.method!r}; a cq agent is one of {', '.join(METHODS)}.")
        d, a = config.obs_dim, config.act_dim
        self.policy = _mlp(d, 2 * a, h.hidden, h.n_layer)
        self.q1 = _mlp(d + a, 1, h.hidden, h.n_layer)
        self.q2 = _mlp(d + a, 1, h.hidden, h.n_layer)
        self.v = _mlp(d, 1, h.hidden, h.n_layer)
        if h.method == "cql":
            self.log_temperature = nn.Parameter(torch.zeros(()))
        self.register_buffer("reward_scale", torch.tensor(float(h.reward_scale or 1.0)), persistent=False)

    @classmethod
    def for_dataset(cls, config: AgentConfig, ds) -> "ContinuousQ":
        """The reward scale fitted from the data when the hparams give none: its largest |reward| (rewards of order 1
        per step, the CQL penalty's logsumexp and IQL's beta then mean what the papers' settings meant)."""
        if config.hparams.get("reward_scale") is None:
            scale = float(max(np.abs(ds.rewards).max(initial=0.0), 1e-6))
            config = replace(config, hparams={**config.hparams, "reward_scale": scale})
        return cls(config)

    # ---- the networks -------------------------------------------------------------------------------------------
    def _policy_out(self, obs: torch.Tensor, run: ActivationRun | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        out = _run(self.policy, obs, run, "policy")
        if run is not None:
            out = run("head.policy", out)
        mean, log_std = out.chunk(2, -1)
        return mean, log_std.clamp(*LOG_STD)

    def _q(self, obs: torch.Tensor, unit: torch.Tensor, params: dict | None = None,
           run: ActivationRun | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(Q1, Q2) in scaled units at actions in [-1, 1]; `params` {"q1": ..., "q2": ...} replaces the weights
        (the targets, or detached copies)."""
        x = torch.cat([obs, unit], -1)
        outs = []
        for name in NETS:
            net = getattr(self, name)
            outs.append((functional_call(net, params[name], (x,)) if params is not None else _run(net, x, run, name))[..., 0])
        return outs[0], outs[1]

    def forward(self, obs: torch.Tensor, actions: torch.Tensor | None = None,
                activations: ActivationRun | None = None) -> dict[str, torch.Tensor]:
        """Normalised obs [..., obs_dim], actions [..., act_dim] in env units (None: the policy's deterministic
        action) -> {"q": min Q [...], "v": V [...] (raw return units), "greedy": the policy's deterministic action
        [..., act_dim] in env units}."""
        run = activations
        mean, _ = self._policy_out(obs, run)
        unit = torch.tanh(mean) if actions is None else self.actions_to_unit(actions)
        q1, q2 = self._q(obs, unit, run=run)
        q = torch.minimum(q1, q2) * self.reward_scale
        v = _run(self.v, obs, run, "v")[..., 0] * self.reward_scale
        if run is not None:
            q, v = run("head.q", q), run("head.v", v)
        return {"q": q, "v": v, "greedy": self.unit_to_actions(torch.tanh(mean))}

    def activation_names(self) -> list[str]:
        layers = range(self.cfg.n_layer)
        return ([f"policy.hidden.{i}" for i in layers] + ["head.policy"] + [f"q1.hidden.{i}" for i in layers]
                + [f"q2.hidden.{i}" for i in layers] + ["head.q"] + [f"v.hidden.{i}" for i in layers] + ["head.v"])

    # ---- what views and findings call --------------------------------------------------------------------------
    def episode_values(self, obs, actions) -> dict:
        """One episode: raw observations [T, obs_dim], actions [T, act_dim] in env units -> {"q": None, "q_taken": [T]
        min Q of the logged action, "v": [T] V(s), "greedy": [T, act_dim] the policy's deterministic action in env
        units}, float32 numpy, raw return units."""
        obs, actions = np.asarray(obs), np.asarray(actions)
        if obs.ndim != 2 or obs.shape[1] != self.obs_dim:
            raise AgentError(f"episode_values expects observations [T, {self.obs_dim}], got shape {obs.shape}.")
        if actions.shape != (len(obs), self.act_dim):
            raise AgentError(f"episode_values expects actions [T, {self.act_dim}] for {len(obs)} observations, "
                             f"got shape {actions.shape}.")
        with inference(self):
            out = self(self.normalize(torch.as_tensor(obs, dtype=torch.float32)),
                       torch.as_tensor(actions, dtype=torch.float32))
        return {"q": None, "q_taken": out["q"].numpy().astype(np.float32), "v": out["v"].numpy().astype(np.float32),
                "greedy": out["greedy"].numpy().astype(np.float32)}

    # ---- training ----------------------------------------------------------------------------------------------
    def prepare_training(self, data: TrainingData) -> QTraining:
        ds = data.dataset
        ends = np.asarray(data.ends)
        last = np.zeros(len(data.obs), bool)
        last[ends - 1] = True
        following = np.where(last, np.arange(len(last)), np.arange(len(last)) + 1)
        valid = np.flatnonzero(~last | np.asarray(ds.terminated, bool))
        if not len(valid):
            raise AgentError(f"{ds.source} has no transition to learn values from (every episode is one truncated step).")
        return QTraining(data, valid, following, {n: self._frozen(n) for n in NETS})

    def _frozen(self, name: str) -> dict:
        return {k: v.detach().clone() for k, v in getattr(self, name).named_parameters()}

    def sample_batch(self, run: QTraining, batch_size: int, rng: np.random.Generator) -> dict:
        """Transitions drawn uniformly over the data's steps that have a next state (a replay buffer's draw)."""
        t = run.valid[rng.integers(0, len(run.valid), size=batch_size)]
        d = run.data
        return {"obs": torch.from_numpy(d.obs[t]), "actions": torch.from_numpy(d.actions[t]),
                "rewards": torch.from_numpy(d.rewards[t]), "next_obs": torch.from_numpy(d.obs[run.following[t]]),
                "done": torch.from_numpy(np.asarray(d.dataset.terminated, bool)[t]), "run": run}

    def _polyak(self, target: dict) -> None:
        with torch.no_grad():
            for name in NETS:
                for k, p in getattr(self, name).named_parameters():
                    target[name][k].lerp_(p, self.cfg.tau)

    def _sample(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A reparameterised tanh-Gaussian action in [-1, 1] and its log density."""
        mean, log_std = self._policy_out(obs)
        std = log_std.exp()
        u = mean + std * torch.randn_like(mean)
        a = torch.tanh(u)
        logp = (-0.5 * ((u - mean) / std).square() - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)
        return a, logp - torch.log1p(-a.square() + 1e-6).sum(-1)

    def loss(self, batch: dict) -> tuple[torch.Tensor, dict]:
        run: QTraining = batch["run"]
        self._polyak(run.target)
        obs, next_obs = batch["obs"], batch["next_obs"]
        unit = self.actions_to_unit(batch["actions"])
        rewards = batch["rewards"] / self.reward_scale
        live = self.cfg.gamma * (~batch["done"]).float()
        if self.cfg.method == "iql":
            return self._iql(obs, unit, rewards, next_obs, live, run.target)
        return self._cql(obs, unit, rewards, next_obs, live, run.target)

    def _iql(self, obs, unit, rewards, next_obs, live, target) -> tuple[torch.Tensor, dict]:
        h = self.cfg
        with torch.no_grad():
            q_target = torch.minimum(*self._q(obs, unit, target))
            td_target = rewards + live * self.v(next_obs)[..., 0]
        v = self.v(obs)[..., 0]
        v_loss = expectile_loss(q_target - v, h.expectile)
        q1, q2 = self._q(obs, unit)
        q_loss = F.mse_loss(q1, td_target) + F.mse_loss(q2, td_target)
        weight = torch.exp(h.beta * (q_target - v.detach())).clamp(max=h.max_weight)
        mean, log_std = self._policy_out(obs)
        logp = torch.distributions.Normal(torch.tanh(mean), log_std.exp()).log_prob(unit).sum(-1)
        actor_loss = -(weight * logp).mean()
        metrics = {"q_loss": q_loss.item(), "v_loss": v_loss.item(), "actor_loss": actor_loss.item(),
                   "q_mean": q1.mean().item() * float(self.reward_scale)}
        return v_loss + q_loss + actor_loss, metrics

    def _cql(self, obs, unit, rewards, next_obs, live, target) -> tuple[torch.Tensor, dict]:
        h = self.cfg
        B, N, A = obs.shape[0], h.n_sampled, self.act_dim
        with torch.no_grad():
            a_next, _ = self._sample(next_obs)
            td_target = rewards + live * torch.minimum(*self._q(next_obs, a_next, target))
            # the penalty's sampled actions: N uniform (density 2^-A), N from pi(.|s), N from pi(.|s'), all at s
            rep, rep_next = obs.repeat_interleave(N, 0), next_obs.repeat_interleave(N, 0)
            a_pi, logp_pi = self._sample(rep)
            a_npi, logp_npi = self._sample(rep_next)
            a_rand = torch.rand(B * N, A) * 2 - 1
        q1, q2 = self._q(obs, unit)
        td = F.mse_loss(q1, td_target) + F.mse_loss(q2, td_target)
        penalty = 0.0
        sampled = [self._q(rep, a, None) for a in (a_rand, a_pi, a_npi)]
        for i, q_data in enumerate((q1, q2)):
            scores = torch.cat([(sampled[0][i] + A * math.log(2)).view(B, N), (sampled[1][i] - logp_pi).view(B, N),
                                (sampled[2][i] - logp_npi).view(B, N)], 1)
            penalty = penalty + (torch.logsumexp(scores, 1) - q_data).mean()
        a_new, logp_new = self._sample(obs)
        temperature = self.log_temperature.exp().detach()
        frozen = {n: {k: p.detach() for k, p in getattr(self, n).named_parameters()} for n in NETS}
        q_new = torch.minimum(*self._q(obs, a_new, frozen))
        actor_loss = (temperature * logp_new - q_new).mean()
        temp_loss = -(self.log_temperature * (logp_new.detach() - A)).mean()   # target entropy -A
        with torch.no_grad():
            v_target = torch.minimum(*self._q(obs, a_new.detach(), target))
        v_loss = F.mse_loss(self.v(obs)[..., 0], v_target)
        metrics = {"td_loss": td.item(), "cql_penalty": penalty.item(), "actor_loss": actor_loss.item(),
                   "temperature": temperature.item(), "q_mean": q1.mean().item() * float(self.reward_scale)}
        return td + h.alpha * penalty + actor_loss + temp_loss + v_loss, metrics

    # ---- acting ------------------------------------------------------------------------------------------------
    def start_rollout(self, n_envs: int, target_returns=None, sample: bool = True, seed: int = 0):
        """Greedy: the policy's deterministic action tanh(mean), as both papers evaluate (`sample` is ignored)."""
        return _GreedyRollout(self)


class _GreedyRollout(RolloutBase):
    def __init__(self, agent: ContinuousQ):
        self.agent, self.last = agent, None

    def act(self, obs: np.ndarray) -> np.ndarray:
        with inference(self.agent):
            self.last = self.agent(self.agent.normalize(torch.as_tensor(obs, dtype=torch.float32)))
        return self.last["greedy"].numpy().astype(np.float32)

    def observe(self, rewards: np.ndarray) -> None:
        pass

    def _need(self, what: str) -> dict:
        if self.last is None:
            raise ValueError(f"{what}() describes the last act(); call act() first.")
        return self.last

    def policy(self) -> np.ndarray:
        """The action [B, act_dim] in env units the last act() chose."""
        return self._need("policy")["greedy"].numpy()

    def value(self) -> np.ndarray:
        """V(s) [B] of the last act()'s observations, raw return units."""
        return self._need("value")["v"].numpy()

    def take(self, actions) -> None:
        self._need("take")   # Markov: the next step reads nothing of this one
