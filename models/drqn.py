"""Kind "drqn": a recurrent Q-network (Hausknecht & Stone 2015), Q(h_t, .) with h_t a GRU's state over the episode's
observations and previous actions, trained offline with discrete CQL on sampled sub-sequences with a burn-in."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .activations import ActivationRun
from .base import AgentConfig
from .hparams import DRQNHparams, resolve
from .value_agents import ValueAgent, ValueTraining


class DRQN(ValueAgent):
    """Q(o_1..t, a_1..t-1, a) for every discrete action a, in raw return units; acts from the episode's first step with
    the GRU state carried along (as the GRU policy of models/baselines.py, whose input it shares: [obs, one-hot
    previous action], zeros at t = 0).

    Named activations (`run_with_cache((obs, prev_actions[, hidden]))`, models/activations.py), B sequences of T steps:
      gru.input    [B, T, hidden]     relu(inp([obs, prev_action])): what the GRU reads at each step
      gru.hidden   [B, T, hidden]     the (top layer's) recurrent state after each step; an intervention changes what
                                      the head reads at those steps, not the later recurrence (as the GRU policy's)
      head.q       [B, T, n_actions]  Q in raw return units: the forward's output
      head.v       [B, T]             max_a head.q (a readout: nothing after it reads it)
    """

    family = "a recurrent Q-network (DRQN)"
    capabilities = frozenset({"q_values", "acts", "recurrent"})

    def __init__(self, config: AgentConfig):
        config = replace(config, hparams=resolve("drqn", config.hparams))
        super().__init__(config)
        self.cfg = h = DRQNHparams(**config.hparams)
        self.inp = nn.Linear(config.obs_dim + int(config.n_actions), h.hidden)
        self.gru = nn.GRU(h.hidden, h.hidden, num_layers=h.n_layer, batch_first=True)
        self.head = nn.Linear(h.hidden, int(config.n_actions))

    def prev_actions(self, actions: torch.Tensor) -> torch.Tensor:
        """Logged actions [B, T] -> the one-hot action before each step [B, T, n_actions] (zeros at t = 0)."""
        a = F.one_hot(actions.long(), self.n_actions).float()
        return torch.cat([torch.zeros_like(a[:, :1]), a[:, :-1]], dim=1)

    def forward(self, obs: torch.Tensor, prev_actions: torch.Tensor, hidden: torch.Tensor | None = None,
                activations: ActivationRun | None = None):
        """obs [B, T, obs_dim] normalised, prev_actions [B, T, n_actions] -> (Q [B, T, n_actions] raw units, hidden)."""
        run = activations
        x = torch.relu(self.inp(torch.cat([obs, prev_actions], -1)))
        if run is None:
            x, hidden = self.gru(x, hidden)
            return self.head(x) * self.q_scale, hidden
        x, hidden = self.gru(run("gru.input", x), hidden)
        q = run("head.q", self.head(run("gru.hidden", x)) * self.q_scale)
        run("head.v", q.max(-1).values)
        return q, hidden

    def activation_names(self) -> list[str]:
        return ["gru.input", "gru.hidden", "head.q", "head.v"]

    def q_values(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return self(obs[None], self.prev_actions(actions[None]))[0][0]

    def rollout_state(self, n_envs: int):
        return None, torch.zeros(n_envs, 1, self.n_actions)

    def step_q(self, obs: torch.Tensor, state):
        hidden, prev = state
        q, hidden = self(obs[:, None], prev, hidden)
        return q[:, 0], (hidden, prev)

    def after_action(self, state, actions: np.ndarray):
        hidden, _ = state
        return hidden, F.one_hot(torch.as_tensor(actions).long(), self.n_actions).float()[:, None]

    # ---- offline training (models/train.py's loop) ------------------------------------------------------------
    def sample_batch(self, train: ValueTraining, batch_size: int, rng: np.random.Generator) -> dict:
        """Sub-sequences: the first loss step drawn uniformly over the data's steps, up to `burn_in` steps before it
        (fewer at the episode's start, where the GRU's zero state is the true one) that carry the GRU state without a
        loss, then `seq_len` loss steps and one more for the last target. Targets from the run's target network over
        the same sequence."""
        self.update_target(train.target, train.updates)
        train.updates += 1
        h, data = self.cfg, train.data
        first = rng.integers(0, len(data.obs), size=batch_size)
        episode = np.searchsorted(data.starts, first, side="right") - 1
        start, end = data.starts[episode], data.ends[episode]
        begin = np.maximum(start, first - h.burn_in)
        L = h.burn_in + h.seq_len + 1
        idx = begin[:, None] + np.arange(L)[None]
        inside = idx < end[:, None]
        idx = np.minimum(idx, end[:, None] - 1)   # past the episode's end: its last step again, never a loss step
        usable = np.zeros(len(data.obs), bool)
        usable[train.valid] = True
        pos = np.arange(L)[None]
        lo = (first - begin)[:, None]
        mask = inside & usable[idx] & (pos >= lo) & (pos < lo + h.seq_len)
        obs, actions = torch.from_numpy(data.obs[idx]), torch.from_numpy(data.actions[idx])
        prev = self.prev_actions(actions)
        with torch.no_grad():   # training's own no-grad (inference() would flip the module's train mode per step)
            q_online = self(obs, prev)[0] / self.q_scale
            q_target = train.target(obs, prev)[0] / self.q_scale
            target = self.td_target(data.rewards[idx[:, :-1]], train.terminal[idx[:, :-1]], q_online[:, 1:],
                                    q_target[:, 1:])
        return {"obs": obs, "prev": prev, "actions": actions[:, :-1], "target": target,
                "mask": torch.from_numpy(mask[:, :-1])}

    def loss(self, batch: dict) -> tuple[torch.Tensor, dict]:
        q, _ = self(batch["obs"], batch["prev"])
        return self.td_batch_loss(q[:, :-1], batch["actions"], batch["target"], batch["mask"])
