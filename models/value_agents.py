"""What the value-based agents share (kinds "q": models/q_network.py, "drqn": models/drqn.py; issue 24's contract).

A value agent predicts Q(s, a) for every discrete action and acts greedily on it. It is trained offline through the one
loop of models/train.py (sample_batch + loss; the TD targets are computed in sample_batch from a target network that
`prepare_training` makes once per run, so nothing of training is kept on the agent or saved with it) or online by
models/online_train.py (DQN), whose updates call the same `td_batch_loss`.

Units: Q is learnt on rewards divided by config.rtg_scale (the DT's scale: returns of order 1 whatever the
environment's units), and every output a user sees is in raw return units again: the forward's Q ("head.q"),
`episode_values`, the rollout's value(). Only the loss works in scaled units.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .base import Agent, AgentConfig, RolloutBase, inference
from .errors import AgentError
from .windows import TrainingData


@dataclass
class ValueTraining:
    """What one offline run draws from: the normalised data, the transitions that have a next state (or end in a
    terminal), and the target network (a copy of the agent, never saved, never optimised)."""

    data: TrainingData
    valid: np.ndarray           # [M] absolute steps t with a next step t + 1 in the episode, or terminated[t]
    terminal: np.ndarray        # [N] bool: the episode ended at this step by the task (no bootstrap after it)
    target: Agent
    updates: int = 0


def valid_steps(data: TrainingData) -> tuple[np.ndarray, np.ndarray]:
    """(steps with a usable transition, terminal flags). The last step of an episode cut by a time limit (or by the
    end of the file) has no next observation in a Dataset, so it has no target: left out rather than treated as a
    terminal, which would teach Q that the task ends there."""
    ds = data.dataset
    terminal = np.asarray(ds.terminated, bool)
    last = np.zeros(len(terminal), bool)
    last[data.ends - 1] = True
    return np.flatnonzero(~last | terminal), terminal


class ValueAgent(Agent):
    """Base of the discrete value agents: the scale buffer, TD targets and losses, a target network per training run,
    `episode_values` and the greedy rollout. Subclasses give `q_values(obs, actions)` (one episode, normalised) and the
    per-step hooks the rollout calls (`rollout_state`, `step_q`, `after_action`)."""

    capabilities = frozenset({"q_values", "acts"})

    def __init__(self, config: AgentConfig):
        if not config.discrete or not config.n_actions:
            raise AgentError(f"a '{config.kind}' agent chooses among discrete actions; this config has continuous "
                             "ones (a continuous value agent is kind 'cq').")
        super().__init__(config)
        self.register_buffer("q_scale", torch.tensor(float(config.rtg_scale)), persistent=False)

    @property
    def n_actions(self) -> int:
        return int(self.config.n_actions)

    def card(self) -> dict:
        h = self.cfg
        return {**super().card(), "method": h.method, "gamma": h.gamma, "cql_alpha": h.alpha if h.method == "cql" else None}

    # ---- training ----------------------------------------------------------------------------------------
    def prepare_training(self, data: TrainingData) -> ValueTraining:
        if self.cfg.method != "cql":
            raise ValueError(f"method '{self.cfg.method}' learns online: train it with models.online_train.train_online; "
                             "models.train.train learns value agents offline with method 'cql'.")
        valid, terminal = valid_steps(data)
        if not len(valid):
            raise ValueError("the dataset has no transition with a next step (every episode is one step long and cut "
                             "by a time limit), so there is nothing to learn Q from.")
        return ValueTraining(data, valid, terminal, self.target_copy())

    def target_copy(self) -> Agent:
        target = copy.deepcopy(self)
        target.eval()
        target.requires_grad_(False)
        return target

    def update_target(self, target: Agent, updates: int) -> None:
        """After `updates` optimiser steps: every target_every updates, target <- target + tau (online - target)
        (tau 1: a periodic copy)."""
        h = self.cfg
        if updates % h.target_every == 0:
            with torch.no_grad():
                for t, p in zip(target.parameters(), self.parameters()):
                    t.lerp_(p, h.tau)

    def bootstrap(self, q_online_next: torch.Tensor, q_target_next: torch.Tensor) -> torch.Tensor:
        """max_a' Q(s', a') as the target network values it: double DQN lets the online net choose a' (scaled units
        in, scaled units out)."""
        if self.cfg.double:
            return q_target_next.gather(-1, q_online_next.argmax(-1, keepdim=True)).squeeze(-1)
        return q_target_next.max(-1).values

    def td_target(self, rewards, terminal, q_online_next, q_target_next) -> torch.Tensor:
        """r / rtg_scale + gamma (1 - terminal) max Q_target(s', .), in scaled units."""
        rewards = torch.as_tensor(rewards, dtype=torch.float32) / self.q_scale
        keep = 1.0 - torch.as_tensor(terminal, dtype=torch.float32)
        return rewards + self.cfg.gamma * keep * self.bootstrap(q_online_next, q_target_next)

    def td_batch_loss(self, q: torch.Tensor, actions: torch.Tensor, target: torch.Tensor,
                      mask: torch.Tensor | None = None) -> tuple[torch.Tensor, dict]:
        """q [..., n_actions] raw units (the forward's output), actions [...], target [...] scaled units, mask [...]
        (1: a step with a loss) -> (TD loss + alpha CQL term, metrics). The CQL term (Kumar et al. 2020, CQL(H)) pushes
        down logsumexp_a Q(s, a) and up the data's Q(s, a_data), so actions the data never took are not overvalued."""
        h = self.cfg
        q = q / self.q_scale
        q_taken = q.gather(-1, actions.long().unsqueeze(-1)).squeeze(-1)
        td = (F.smooth_l1_loss if h.loss == "huber" else F.mse_loss)(q_taken, target, reduction="none")
        gap = torch.logsumexp(q, -1) - q_taken
        w = torch.ones_like(td) if mask is None else mask.float()
        n = w.sum().clamp(min=1)
        td_loss, cql = (td * w).sum() / n, (gap * w).sum() / n
        alpha = h.alpha if h.method == "cql" else 0.0
        loss = td_loss + alpha * cql
        return loss, {"td_loss": td_loss.item(), "cql_gap": cql.item(),
                      "q_taken": float((q_taken.detach() * w).sum() / n * self.q_scale)}

    # ---- what the views and findings call ------------------------------------------------------------------
    def episode_values(self, obs, actions) -> dict:
        """One episode: obs [T, *obs_shape] raw (as the dataset stores them), actions [T] ints -> {"q": [T, n_actions],
        "q_taken": [T], "v": [T] max_a Q, "greedy": [T] argmax_a Q}, float32 numpy in raw return units (int64 for
        greedy). drqn reads the episode's prefix up to each step."""
        obs = np.asarray(obs)
        actions = np.asarray(actions)
        T = len(obs)
        if obs.ndim < 1 or T == 0 or int(np.prod(obs.shape[1:], dtype=np.int64)) != self.obs_dim:
            raise ValueError(f"episode_values needs observations [T, {self.obs_dim}] for this agent, got shape "
                             f"{tuple(obs.shape)}.")
        if actions.shape != (T,) or not np.issubdtype(actions.dtype, np.integer) or (
                T and (actions.min() < 0 or actions.max() >= self.n_actions)):
            raise ValueError(f"episode_values needs one action per observation ({T}), integers in 0..{self.n_actions - 1}, "
                             f"got shape {tuple(actions.shape)} of {actions.dtype}.")
        with inference(self):
            x = self.normalize(torch.as_tensor(obs.reshape(T, self.obs_dim), dtype=torch.float32))
            q = self.q_values(x, torch.as_tensor(actions, dtype=torch.long)).float()
        q_np = q.numpy().astype(np.float32)
        return {"q": q_np, "q_taken": np.take_along_axis(q_np, actions[:, None].astype(np.int64), 1)[:, 0],
                "v": q_np.max(1), "greedy": q_np.argmax(1).astype(np.int64)}

    def q_values(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """One episode's normalised observations [T, obs_dim] and logged actions [T] -> Q [T, n_actions], raw units."""
        raise NotImplementedError

    # ---- acting ------------------------------------------------------------------------------------------
    def rollout_state(self, n_envs: int):
        return None

    def step_q(self, obs: torch.Tensor, state):
        """Normalised observations [B, obs_dim] -> (Q [B, n_actions] raw units, next state)."""
        raise NotImplementedError

    def after_action(self, state, actions: np.ndarray):
        return state

    def start_rollout(self, n_envs: int, target_returns=None, sample: bool = True, seed: int = 0):
        """Greedy whatever `sample` says: a value agent's policy is argmax Q (DQN and CQL evaluate greedily)."""
        return GreedyRollout(self, n_envs)


class GreedyRollout(RolloutBase):
    """argmax_a Q in n_envs environments; policy() is that choice as a one-hot distribution, value() max_a Q (raw)."""

    def __init__(self, agent: ValueAgent, n_envs: int):
        self.agent, self.n_envs = agent, n_envs
        self.state = agent.rollout_state(n_envs)
        self.last = None

    def act(self, obs: np.ndarray) -> np.ndarray:
        with inference(self.agent):
            x = self.agent.normalize(torch.as_tensor(np.asarray(obs).reshape(len(obs), -1), dtype=torch.float32))
            self.last, self.state = self.agent.step_q(x, self.state)
        actions = self.last.argmax(-1).numpy().astype(np.int64)
        self.state = self.agent.after_action(self.state, actions)
        return actions

    def _q(self) -> torch.Tensor:
        if self.last is None:
            raise ValueError("policy() and value() describe the last act(); call act() first.")
        return self.last

    def policy(self) -> np.ndarray:
        return F.one_hot(self._q().argmax(-1), self.agent.n_actions).float().numpy()

    def value(self) -> np.ndarray:
        return self._q().max(-1).values.numpy().astype(np.float32)

    def take(self, actions) -> None:
        self._q()
        self.state = self.agent.after_action(self.state, np.asarray(actions).reshape(self.n_envs))

    def observe(self, rewards: np.ndarray) -> None:
        pass
