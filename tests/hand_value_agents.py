"""Hand-made value agents that implement issue 24's value-agent contract exactly (docs/ARCHITECTURE.md, "Values"),
with weights set by hand so every Q, V and patching effect has a known answer.

- `HandQ`: a Markov Q-network, kind "q": hidden.0 = relu(W1 s_norm + b1), Q = W2 hidden.0 + b2, V = max_a Q.
  forward(obs_norm [..., obs_dim]) -> Q [..., n_actions] (MLPPolicy's signature); named activations hidden.0,
  head.q, head.v.
- `HandDRQN`: a recurrent Q-network, kind "drqn", with a LINEAR recurrence so a patched state's effect is known in
  closed form: h_t = decay * h_{t-1} + W_in s_norm_t + W_act onehot(a_{t-1}) (gru.input = the last two terms, W_act
  zero: read, but worth nothing; gru.hidden = h_t), Q_t = U h_t + c.
  forward(obs_norm [B, T, d], prev_actions [B, T, n_actions], hidden [1, B, H] | None) -> (Q [B, T, A], hidden)
  (GRUPolicy's signature); named activations gru.input, gru.hidden, head.q, head.v.
Both: `episode_values(obs, actions)` for one episode in raw return units (here no reward scaling: what the head says).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from models.activations import ActivationRun
from models.base import Agent, AgentConfig, inference
from trajectories.dataset import Dataset


def _config(kind: str, obs_dim: int, n_actions: int, discount: float) -> AgentConfig:
    # stored statistics (zeros / ones): pages use them as they are (no dataset normalisation variant)
    return AgentConfig(kind=kind, obs_dim=obs_dim, act_dim=1, discrete=True, n_actions=n_actions,
                       state_mean=[0.0] * obs_dim, state_std=[1.0] * obs_dim, hparams={"discount": discount},
                       dataset={"name": "hand", "return_max": 3.0})


class HandQ(Agent):
    family = "a hand-made Q-network"
    capabilities = frozenset({"q_values", "acts", "markov"})

    def __init__(self, w1, b1, w2, b2, discount: float = 0.9):
        w1, w2 = np.asarray(w1, np.float32), np.asarray(w2, np.float32)
        super().__init__(_config("q", w1.shape[1], w2.shape[0], discount))
        self.l1, self.l2 = nn.Linear(w1.shape[1], w1.shape[0]), nn.Linear(w2.shape[1], w2.shape[0])
        with torch.no_grad():
            self.l1.weight.copy_(torch.as_tensor(w1))
            self.l1.bias.copy_(torch.as_tensor(np.asarray(b1, np.float32)))
            self.l2.weight.copy_(torch.as_tensor(w2))
            self.l2.bias.copy_(torch.as_tensor(np.asarray(b2, np.float32)))

    def activation_names(self) -> list[str]:
        return ["hidden.0", "head.q", "head.v"]

    def forward(self, obs, activations: ActivationRun | None = None):
        run = activations or (lambda name, x: x)
        q = run("head.q", self.l2(run("hidden.0", torch.relu(self.l1(obs)))))
        run("head.v", q.max(-1).values)
        return q

    def episode_values(self, obs, actions) -> dict:
        with inference(self):
            q = self(self.normalize(torch.as_tensor(np.asarray(obs), dtype=torch.float32))).numpy()
        a = np.asarray(actions, np.int64)
        return {"q": q, "q_taken": q[np.arange(len(a)), a], "v": q.max(1), "greedy": q.argmax(1)}


class HandDRQN(Agent):
    family = "a hand-made recurrent Q-network"
    capabilities = frozenset({"q_values", "acts", "recurrent"})

    def __init__(self, w_in, u, c, decay: float = 0.5, discount: float = 0.9):
        w_in, u = np.asarray(w_in, np.float32), np.asarray(u, np.float32)
        super().__init__(_config("drqn", w_in.shape[1], u.shape[0], discount))
        self.w_in = nn.Parameter(torch.as_tensor(w_in))     # [H, obs_dim]
        self.u = nn.Parameter(torch.as_tensor(u))           # [A, H]
        self.c = nn.Parameter(torch.as_tensor(np.asarray(c, np.float32)))
        # the previous action's weight into the state: zero here (a known answer: no credit on actions), but read, as
        # a drqn reads a_{t-1}
        self.w_act = nn.Parameter(torch.zeros(w_in.shape[0], u.shape[0]))
        self.decay = float(decay)
        self.act_in = u.shape[0]

    def activation_names(self) -> list[str]:
        return ["gru.input", "gru.hidden", "head.q", "head.v"]

    def prev_actions(self, actions: torch.Tensor) -> torch.Tensor:
        a = F.one_hot(actions.long(), self.act_in).float()
        return torch.cat([torch.zeros_like(a[:, :1]), a[:, :-1]], dim=1)

    def forward(self, obs, prev_actions, hidden=None, activations: ActivationRun | None = None):
        run = activations or (lambda name, x: x)
        x = run("gru.input", obs @ self.w_in.T + prev_actions @ self.w_act.T)   # [B, T, H]
        h = torch.zeros(x.shape[0], x.shape[2]) if hidden is None else hidden[0]
        states = []
        for t in range(x.shape[1]):
            h = self.decay * h + x[:, t]
            states.append(h)
        hs = run("gru.hidden", torch.stack(states, 1))
        q = run("head.q", hs @ self.u.T + self.c)
        run("head.v", q.max(-1).values)
        return q, hs[:, -1][None]

    def episode_values(self, obs, actions) -> dict:
        a = torch.as_tensor(np.asarray(actions, np.int64))[None]
        with inference(self):
            q, _ = self(self.normalize(torch.as_tensor(np.asarray(obs), dtype=torch.float32))[None], self.prev_actions(a))
        q = q[0].numpy()
        idx = a[0].numpy()
        return {"q": q, "q_taken": q[np.arange(len(idx)), idx], "v": q.max(1), "greedy": q.argmax(1)}


def hand_q() -> HandQ:
    """obs_dim 2, hidden 2, 3 actions: hidden = relu(s), Q = [s0, s1, s0 + s1 - 1] + [0, 0.5, 0]."""
    return HandQ(np.eye(2), [0, 0], [[1, 0], [0, 1], [1, 1]], [0.0, 0.5, -1.0])


def hand_drqn(decay: float = 0.5) -> HandDRQN:
    """obs_dim 2, hidden 2, 3 actions: h_t = decay h_{t-1} + s_t, Q = [h0, h1, h0 - h1] + [0, 0.25, 0]."""
    return HandDRQN(np.eye(2), [[1, 0], [0, 1], [1, -1]], [0.0, 0.25, 0.0], decay=decay)


def hand_dataset(n_episodes: int = 3, length: int = 6, seed: int = 0, source: str = "hand.npz") -> Dataset:
    """Episodes of 2-d observations in [0, 2) with 3 discrete actions and rewards in {0, 1}."""
    rng = np.random.default_rng(seed)
    n = n_episodes * length
    obs = rng.uniform(0, 2, (n, 2)).astype(np.float32)
    actions = rng.integers(0, 3, n).astype(np.int64)
    rewards = (rng.random(n) < 0.5).astype(np.float32)
    term = np.zeros(n, bool)
    term[length - 1::length] = True
    return Dataset(obs, actions, rewards, term, np.zeros(n, bool), np.arange(0, n, length, dtype=np.int64),
                   obs_names=["x", "y"], n_actions=3, source=source,
                   metadata={"action_labels": ["left", "stay", "right"]})


def hand_dt(value: float = 0.3, next_return: float = 0.2, rtg_scale: float = 10.0, K: int = 3, seed: int = 0):
    """A small random DT for the hand dataset whose value head says `value` and return head `next_return` at every
    step (weights zero, biases set), i.e. value * rtg_scale and next_return * rtg_scale in raw return units."""
    from models.decision_transformer import DecisionTransformer

    torch.manual_seed(seed)
    cfg = AgentConfig(kind="dt", obs_dim=2, act_dim=1, discrete=True, n_actions=3, context_length=K, max_ep_len=50,
                      rtg_scale=rtg_scale, state_mean=[0.0, 0.0], state_std=[1.0, 1.0], dataset={"return_max": 3.0},
                      hparams={"hidden": 16, "n_layer": 2, "n_head": 2})
    dt = DecisionTransformer(cfg).eval()
    with torch.no_grad():
        for p in dt.parameters():
            p.add_(torch.randn_like(p) * 0.3)
        for name, b in (("value", value), ("return", next_return)):
            head = dt.output_head(name)
            head.weight.zero_()
            head.bias.fill_(b)
    return dt


class HandCQ(Agent):
    """A continuous value agent, kind "cq": V(s) = s0, Q(s, a) = s0 − (a − s1)², greedy a = clip(s1, −1, 1)."""

    family = "a hand-made continuous Q-network"
    capabilities = frozenset({"q_values", "acts", "markov"})

    def __init__(self):
        super().__init__(AgentConfig(kind="cq", obs_dim=2, act_dim=1, discrete=False, state_mean=[0.0, 0.0],
                                     state_std=[1.0, 1.0], hparams={"discount": 1.0}))
        self.scale = nn.Parameter(torch.ones(1))

    def activation_names(self) -> list[str]:
        return ["head.q", "head.v"]

    def episode_values(self, obs, actions) -> dict:
        s, a = np.asarray(obs, np.float64), np.asarray(actions, np.float64).reshape(len(obs), 1)
        return {"q": None, "q_taken": s[:, 0] - (a[:, 0] - s[:, 1]) ** 2, "v": s[:, 0],
                "greedy": np.clip(s[:, 1:2], -1, 1)}
