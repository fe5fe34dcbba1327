"""The references the sequence models are measured against.

- MLPPolicy: behaviour cloning on the current observation only (the Markov, K = 1 reference).
- GRUPolicy: a recurrent policy over the whole history (DRQN-style; the reference for POMDPs).
- DynamicsModel: a one-step MLP model s_t, a_t -> s_{t+1}, r_t (the single-step reference for
  predicted rollouts; rolled forward open-loop its error compounds).
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .activations import ActivationRun
from .base import Agent, AgentConfig, RolloutBase, inference
from .hparams import DynamicsHparams, GRUHparams, MLPHparams, resolve
from .windows import TrainingData, sample_windows


def _mlp(d_in: int, d_out: int, hidden: int, layers: int, dropout: float = 0.0) -> nn.Sequential:
    mods, d = [], d_in
    for _ in range(layers):
        mods += [nn.Linear(d, hidden), nn.ReLU(), nn.Dropout(dropout)]
        d = hidden
    mods.append(nn.Linear(d, d_out))
    return nn.Sequential(*mods)


def _mlp_names(net: nn.Sequential) -> list[str]:
    return [f"hidden.{i}" for i in range(sum(isinstance(m, nn.ReLU) for m in net))] + ["head.out"]


def run_hidden(net: nn.Sequential, x: torch.Tensor, run: ActivationRun | None, prefix: str = "") -> torch.Tensor:
    """net(x); with a run, module by module (the same ops in the same order), recording `{prefix}hidden.{i}` after
    each ReLU. Every MLP family (MLP, dynamics, Q-networks, the continuous value learner's nets) runs through here."""
    if run is None:
        return net(x)
    i = 0
    for m in net:
        x = m(x)
        if isinstance(m, nn.ReLU):
            x = run(f"{prefix}hidden.{i}", x)
            i += 1
    return x


def _run_mlp(net: nn.Sequential, x: torch.Tensor, run: ActivationRun | None) -> torch.Tensor:
    """net(x); with a run, `hidden.{i}` after each ReLU and `head.out` after the last Linear."""
    return net(x) if run is None else run("head.out", run_hidden(net, x, run))


class _ActionHead:
    """Shared action decoding for the policies: logits -> sampled/argmax ints, or tanh -> env bounds."""

    def _setup_actions(self, config: AgentConfig) -> int:
        """Output width: logits for discrete actions, the action vector (pre-tanh) for continuous ones."""
        return int(config.n_actions) if config.discrete else config.act_dim

    def _action_loss(self, out: torch.Tensor, actions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.discrete:
            loss = F.cross_entropy(out.reshape(-1, out.shape[-1]), actions.reshape(-1).long(), reduction="none")
        else:
            loss = ((torch.tanh(out) - self.actions_to_unit(actions)) ** 2).mean(-1).reshape(-1)
        mask = mask.reshape(-1).float()
        return (loss * mask).sum() / mask.sum().clamp(min=1)

    def _decode(self, out: torch.Tensor, sample: bool, gen: torch.Generator) -> np.ndarray:
        if self.discrete:
            if sample:
                return torch.multinomial(F.softmax(out, -1), 1, generator=gen)[:, 0].numpy()
            return out.argmax(-1).numpy()
        return self.unit_to_actions(torch.tanh(out)).numpy().astype(np.float32)


class MLPPolicy(_ActionHead, Agent):
    """pi(a_t | o_t): no memory at all.

    Named activations (`run_with_cache(obs)`, models/activations.py), for observations [..., obs_dim]:
      hidden.{i}   [..., hidden]  hidden layer i after its ReLU (i = 0..n_layer-1; dropout, if training, after)
      head.out     [..., n_actions | act_dim]  the output layer: logits, or actions before tanh
    """

    family = "an MLP policy"
    capabilities = frozenset({"action", "acts", "markov"})

    def __init__(self, config: AgentConfig):
        config = replace(config, hparams=resolve("mlp", config.hparams))   # every default into config.json
        super().__init__(config)
        self.cfg = h = MLPHparams(**config.hparams)   # typed: what the model reads
        out = self._setup_actions(config)
        self.net = _mlp(config.obs_dim, out, h.hidden, h.n_layer, h.dropout)

    def forward(self, obs: torch.Tensor, activations: ActivationRun | None = None) -> torch.Tensor:
        """Normalised observations [..., obs_dim] -> logits or pre-tanh actions. activations: the per-call
        record/intervene run of `run_with_cache` (None: the plain forward)."""
        return _run_mlp(self.net, obs, activations)

    def activation_names(self) -> list[str]:
        return _mlp_names(self.net)

    def sample_batch(self, data: TrainingData, batch_size: int, rng: np.random.Generator) -> dict:
        w = sample_windows(data, batch_size, 1, rng)
        return {"obs": torch.from_numpy(w["obs"][:, 0]), "actions": torch.from_numpy(w["actions"][:, 0])}

    def loss(self, batch: dict) -> tuple[torch.Tensor, dict]:
        loss = self._action_loss(self(batch["obs"]), batch["actions"], torch.ones(len(batch["obs"])))
        return loss, {"action_loss": loss.item()}

    def start_rollout(self, n_envs: int, target_returns=None, sample: bool = True, seed: int = 0):
        return _MLPRollout(self, sample, seed)


class _PolicyReadout(RolloutBase):
    """What the last act() proposed, and live play's take(): the envs took other actions (DTRollout has the same)."""

    last = None   # the action head's output of the last act() [B, out]

    def policy(self) -> np.ndarray:
        """Action probabilities [B, n_actions] (discrete) or the action [B, act_dim] in env units (continuous)."""
        if self.last is None:
            raise ValueError("policy() describes the last act(); call act() first.")
        if self.agent.discrete:
            return F.softmax(self.last.float(), -1).numpy()
        return self.agent.unit_to_actions(torch.tanh(self.last)).numpy()

    def take(self, actions) -> None:
        if self.last is None:
            raise ValueError("take() replaces the action of the last act(); call act() first.")


class _MLPRollout(_PolicyReadout):
    def __init__(self, agent: MLPPolicy, sample: bool, seed: int):
        self.agent, self.sample = agent, sample
        self.gen = torch.Generator().manual_seed(seed)

    def act(self, obs: np.ndarray) -> np.ndarray:
        with inference(self.agent):
            obs = self.agent.normalize(torch.as_tensor(obs, dtype=torch.float32))
            self.last = self.agent(obs)
            return self.agent._decode(self.last, self.sample, self.gen)

    def observe(self, rewards: np.ndarray) -> None:
        pass


class GRUPolicy(_ActionHead, Agent):
    """pi(a_t | o_1..t, a_1..t-1) through a GRU carried over the whole episode.

    Trained on whole episodes from their first step, so the hidden state it learns from is the one it
    acts with (no burn-in mismatch). Episodes are drawn uniformly, as for the other models.

    Named activations (`run_with_cache((obs, prev_actions[, hidden]))`, models/activations.py), B sequences
    of T steps:
      gru.input    [B, T, hidden]  relu(inp([obs, prev_action])): what the GRU reads at each step
      gru.hidden   [B, T, hidden]  the (top layer's) recurrent state after each step (nn.GRU's output
                   sequence). An intervention on it changes what the head reads at those steps, not the
                   later steps' recurrence (which runs inside nn.GRU); to carry a change forward, pass
                   the changed state as `hidden` to a call on the following steps.
      head.out     [B, T, n_actions | act_dim]  logits, or actions before tanh
    """

    family = "a GRU policy"
    capabilities = frozenset({"action", "recurrent", "acts"})

    def __init__(self, config: AgentConfig):
        config = replace(config, hparams=resolve("gru", config.hparams))
        super().__init__(config)
        self.cfg = h = GRUHparams(**config.hparams)
        out = self._setup_actions(config)
        hidden = h.hidden
        self.act_in = config.n_actions if config.discrete else config.act_dim
        self.inp = nn.Linear(config.obs_dim + self.act_in, hidden)
        self.gru = nn.GRU(hidden, hidden, num_layers=h.n_layer, batch_first=True)
        self.head = nn.Linear(hidden, out)

    def prev_actions(self, actions: torch.Tensor) -> torch.Tensor:
        """Logged actions [B, T] (discrete) or [B, T, act_dim] -> the forward's prev_actions [B, T, act_in]:
        the action before each step (zeros at t = 0), one-hot for discrete, in [-1, 1] for continuous."""
        a = F.one_hot(actions.long(), self.act_in).float() if self.discrete else self.actions_to_unit(actions)
        return torch.cat([torch.zeros_like(a[:, :1]), a[:, :-1]], dim=1)

    def forward(self, obs: torch.Tensor, prev_actions: torch.Tensor, hidden: torch.Tensor | None = None,
                activations: ActivationRun | None = None):
        """obs [B, T, obs_dim] normalised, prev_actions [B, T, act_in] -> (outputs [B, T, out], hidden).
        activations: the per-call record/intervene run of `run_with_cache` (None: the plain forward)."""
        run = activations
        if run is None:
            x, hidden = self.gru(torch.relu(self.inp(torch.cat([obs, prev_actions], -1))), hidden)
            return self.head(x), hidden
        x, hidden = self.gru(run("gru.input", torch.relu(self.inp(torch.cat([obs, prev_actions], -1)))), hidden)
        return run("head.out", self.head(run("gru.hidden", x))), hidden

    def activation_names(self) -> list[str]:
        return ["gru.input", "gru.hidden", "head.out"]

    def sample_batch(self, data: TrainingData, batch_size: int, rng: np.random.Generator) -> dict:
        episodes = rng.integers(0, len(data.starts), size=batch_size)
        T = int(min((data.ends[episodes] - data.starts[episodes]).max(), self.cfg.max_train_len))
        idx = data.starts[episodes][:, None] + np.arange(T)[None, :]
        mask = idx < data.ends[episodes][:, None]
        idx = np.where(mask, idx, data.starts[episodes][:, None])
        return {"obs": torch.from_numpy(data.obs[idx]), "actions": torch.from_numpy(data.actions[idx]),
                "mask": torch.from_numpy(mask)}

    def loss(self, batch: dict) -> tuple[torch.Tensor, dict]:
        out, _ = self(batch["obs"], self.prev_actions(batch["actions"]))
        loss = self._action_loss(out, batch["actions"], batch["mask"])
        return loss, {"action_loss": loss.item()}

    def start_rollout(self, n_envs: int, target_returns=None, sample: bool = True, seed: int = 0):
        return _GRURollout(self, n_envs, sample, seed)


class _GRURollout(_PolicyReadout):
    def __init__(self, agent: GRUPolicy, n_envs: int, sample: bool, seed: int):
        self.agent, self.sample = agent, sample
        self.gen = torch.Generator().manual_seed(seed)
        self.hidden = None
        self.prev = torch.zeros(n_envs, 1, agent.act_in)

    def act(self, obs: np.ndarray) -> np.ndarray:
        with inference(self.agent):
            obs = self.agent.normalize(torch.as_tensor(obs, dtype=torch.float32))[:, None]
            out, self.hidden = self.agent(obs, self.prev, self.hidden)
            self.last = out[:, 0]
            actions = self.agent._decode(self.last, self.sample, self.gen)
            self._feed(actions)
            return actions

    def _feed(self, actions) -> None:
        """The previous action the next step reads."""
        a = torch.as_tensor(np.asarray(actions))
        self.prev = (F.one_hot(a.long(), self.agent.act_in).float() if self.agent.discrete else self.agent.actions_to_unit(a))[:, None]

    def take(self, actions) -> None:
        super().take(actions)
        self._feed(np.asarray(actions).reshape(self.prev.shape[0], *np.shape(actions)[1:]))

    def observe(self, rewards: np.ndarray) -> None:
        pass


class DynamicsModel(_ActionHead, Agent):
    """s_t, a_t -> s_{t+1}, r_t, predicting the normalised change of state (residual) and the reward.

    With hparams["history"] = h > 0 it also reads the h logged transitions before t, concatenated oldest first,
    each as [normalised s, action input, present] (present 0 and the rest zeros before the episode's first step):
    the one-step model given a TT's context, so history and sequence modelling are measured apart (issue 24).
    Called without `past` such a model reads "no history" (every slot absent), a valid input: callers that know
    nothing of history still get its predictions at an episode's start.

    Named activations (`run_with_cache((obs, actions))` or `((obs, actions, None, past))`, models/activations.py),
    for inputs [..., ...]:
      hidden.{i}   [..., hidden]  hidden layer i after its ReLU (i = 0..n_layer-1)
      head.out     [..., obs_dim + 1]  the output layer: the normalised change of state, then the reward
                   before reward_scale
    """

    family = "a dynamics model"
    capabilities = frozenset({"dynamics", "state"})

    def __init__(self, config: AgentConfig):
        config = replace(config, hparams=resolve("dynamics", config.hparams))
        super().__init__(config)
        self.cfg = h = DynamicsHparams(**config.hparams)
        if int(h.history) < 0:
            raise ValueError(f"a dynamics model's history is a number of transitions, 0 or more; got {h.history}.")
        self.act_in = config.n_actions if config.discrete else config.act_dim
        self.history = int(h.history)
        self.slot = config.obs_dim + self.act_in + 1          # one past transition: s, action input, present
        d_in = config.obs_dim + self.act_in + self.history * self.slot
        self.net = _mlp(d_in, config.obs_dim + 1, h.hidden, h.n_layer)
        self.register_buffer("reward_scale", torch.tensor(float(h.reward_scale)), persistent=False)

    def action_input(self, actions: torch.Tensor) -> torch.Tensor:
        """Raw actions -> what the network reads: one-hot (discrete) or mapped into [-1, 1] by the bounds."""
        return F.one_hot(actions.long(), self.act_in).float() if self.discrete else self.actions_to_unit(actions)

    def past_slots(self, obs: torch.Tensor, actions: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        """Normalised obs [..., h, obs_dim], raw actions [..., h(, act_dim)], present [..., h] (bool) -> the
        forward's `past` [..., h, obs_dim + act_in + 1], zeros where a slot is absent."""
        p = present.to(obs.dtype)[..., None]
        return torch.cat([obs * p, self.action_input(actions) * p, p], -1)

    def forward(self, obs: torch.Tensor, actions: torch.Tensor, activations: ActivationRun | None = None,
                past: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised obs [..., obs_dim], raw actions, past [..., history, obs_dim + act_in + 1] (`past_slots`;
        None: no history) -> (normalised next obs, reward). activations: the per-call record/intervene run of
        `run_with_cache` (None: the plain forward)."""
        x = [obs, self.action_input(actions)]
        if self.history:
            if past is None:
                past = obs.new_zeros(*obs.shape[:-1], self.history, self.slot)
            if past.shape[-2:] != (self.history, self.slot):
                raise ValueError(f"past must be [..., {self.history}, {self.slot}] (history, obs + action + present); "
                                 f"got {tuple(past.shape)}.")
            x.append(past.reshape(*past.shape[:-2], self.history * self.slot))
        out = _run_mlp(self.net, torch.cat(x, -1), activations)
        return obs + out[..., :-1], out[..., -1] * self.reward_scale

    def activation_names(self) -> list[str]:
        return _mlp_names(self.net)

    def sample_batch(self, data: TrainingData, batch_size: int, rng: np.random.Generator) -> dict:
        # transitions t -> t+1 inside an episode (the last step's next observation is not in the data)
        episodes = rng.integers(0, len(data.starts), size=batch_size * 2)
        lengths = data.ends[episodes] - data.starts[episodes]
        episodes, lengths = episodes[lengths > 1][:batch_size], lengths[lengths > 1][:batch_size]
        t = data.starts[episodes] + (rng.random(len(episodes)) * (lengths - 1)).astype(np.int64)
        batch = {"obs": torch.from_numpy(data.obs[t]), "actions": torch.from_numpy(data.actions[t]),
                 "next_obs": torch.from_numpy(data.obs[t + 1]), "rewards": torch.from_numpy(data.rewards[t])}
        if self.history:
            idx = t[:, None] - np.arange(self.history, 0, -1)[None, :]          # oldest first
            present = idx >= data.starts[episodes][:, None]
            idx = np.maximum(idx, data.starts[episodes][:, None])
            batch["past"] = self.past_slots(torch.from_numpy(data.obs[idx]), torch.from_numpy(data.actions[idx]),
                                            torch.from_numpy(present))
        return batch

    def loss(self, batch: dict) -> tuple[torch.Tensor, dict]:
        next_obs, reward = self(batch["obs"], batch["actions"], past=batch.get("past"))
        state_loss = F.mse_loss(next_obs, batch["next_obs"])
        reward_loss = F.mse_loss(reward / self.reward_scale, batch["rewards"] / self.reward_scale)
        return state_loss + reward_loss, {"state_loss": state_loss.item(), "reward_loss": reward_loss.item()}

    def rollout(self, obs0: np.ndarray, actions: np.ndarray, past_obs: np.ndarray | None = None,
                past_actions: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Batched open loop: raw obs0 [B, obs_dim], logged actions [B, H(, act_dim)], the logged transitions
        before the start (raw past_obs [B, c, obs_dim], past_actions [B, c(, act_dim)], oldest first; the last
        `history` are read, fewer are absent slots) -> predicted raw observations [B, H, obs_dim] after each action
        and rewards [B, H] (float64). Each prediction is fed back in, and joins the history, so errors compound."""
        with inference(self):
            obs = self.normalize(torch.as_tensor(np.asarray(obs0), dtype=torch.float32))
            acts = torch.as_tensor(np.asarray(actions))
            past = self._start_past(obs, acts, past_obs, past_actions) if self.history else None
            states, rewards = [], []
            for h in range(acts.shape[1]):
                nxt, r = self(obs, acts[:, h]) if past is None else self(obs, acts[:, h], past=past)
                if self.history:
                    new = self.past_slots(obs[:, None], acts[:, h:h + 1], torch.ones(len(obs), 1, dtype=torch.bool))
                    past = torch.cat([past[:, 1:], new], 1)
                obs = nxt
                states.append(obs * self.state_std + self.state_mean)
                rewards.append(r)
            return (torch.stack(states, 1).numpy().astype(np.float64),
                    torch.stack(rewards, 1).numpy().astype(np.float64))

    def _start_past(self, obs, acts, past_obs, past_actions) -> torch.Tensor:
        """The `past` of the first prediction: the last `history` logged transitions, absent slots first."""
        B, h = len(obs), self.history
        past = obs.new_zeros(B, h, self.slot)
        if past_obs is None or np.shape(past_obs)[1] == 0:
            return past
        c = min(int(np.shape(past_obs)[1]), h)
        po = self.normalize(torch.as_tensor(np.asarray(past_obs)[:, -c:], dtype=torch.float32))
        pa = torch.as_tensor(np.asarray(past_actions)[:, -c:]).to(acts.dtype)
        past[:, h - c:] = self.past_slots(po, pa, torch.ones(B, c, dtype=torch.bool))
        return past

    def rollout_open_loop(self, obs0: np.ndarray, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """From raw obs0 [obs_dim] and H logged actions, the predicted raw observations [H, obs_dim] after each
        action and the rewards [H], with no history before obs0: each prediction is fed back in, so errors compound.
        One step at a time (the batched `rollout`'s reference, tested against it)."""
        if self.history:
            obs, rew = self.rollout(np.asarray(obs0)[None], np.asarray(actions)[None])
            return obs[0].astype(np.float32), rew[0].astype(np.float32)
        with inference(self):
            obs = self.normalize(torch.as_tensor(obs0, dtype=torch.float32))
            states, rewards = [], []
            for a in torch.as_tensor(np.asarray(actions)):
                obs, r = self(obs[None], a[None])
                obs = obs[0]
                states.append(obs * self.state_std + self.state_mean)
                rewards.append(float(r[0]))
            return torch.stack(states).numpy(), np.asarray(rewards, np.float32)

    def start_rollout(self, n_envs: int, target_returns=None, sample: bool = True, seed: int = 0):
        raise ValueError("a dynamics model predicts states, it does not act; evaluate a policy instead.")
