"""What a value function says about one logged episode: which states the agent likes, which action it would take,
and how much better or worse it thinks the logged action is (issue 24, item 1's views).

- `value_trace(agent, dataset, episode)`: a value-based agent's (capability "q_values") Q(s, ·), V(s), Q of the
  logged action, the advantage Q(s, a_logged) − V(s), its greedy action beside the logged one, through the one
  method every value agent provides, `agent.episode_values(obs, actions)` (raw return units; docs/ARCHITECTURE.md,
  "Values"). The "truth" row is the discounted return-to-go of the logged rewards, G_t = r_t + γ G_{t+1}, with the
  agent's own discount γ (its hparams' "discount" or "gamma"; 1 when it states none).
- `dt_value_trace(dt, dataset, episode)`: a Decision Transformer's answers on the same steps: its value head with
  every return-to-go hidden (rtg_known=False, how it was trained and how the Credit page reads it) and its return
  prediction R_{t+1} (the a_t token, return-to-go known), both times rtg_scale, i.e. raw return units; its truth is
  the undiscounted return-to-go R_t (γ = 1: what the DT is trained on).

Both come as a `ValueTrace` with the same fields where they mean the same, so one figure draws either and compare
mode can put a value agent's V(s) beside a DT's value head on one axis.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from models.base import inference
from models.checks import check_dataset
from models.errors import AgentError

from analysis.core.inputs import episode_steps, step_windows, training_data, window_rows

AGREE_TOL = 0.1   # continuous actions: greedy and logged "agree" when every dimension is within this in [-1, 1] units


@dataclass
class ValueTrace:
    """One agent's values over one logged episode (all arrays [T], raw return units)."""

    agent_kind: str
    episode: int
    steps: np.ndarray                   # [T] episode steps 0..T-1
    v: np.ndarray                       # value agent: V(s); DT: value head (return-to-go hidden)
    rewards: np.ndarray                 # [T] logged rewards
    truth: np.ndarray                   # [T] discounted return-to-go of the logged rewards (γ = discount)
    discount: float
    action_names: list[str] = field(default_factory=list)
    q: np.ndarray | None = None         # [T, n_actions] (discrete value agents); None otherwise
    q_taken: np.ndarray | None = None   # [T] Q(s, a_logged)
    greedy: np.ndarray | None = None    # [T] (discrete) or [T, act_dim] the agent's own action
    logged: np.ndarray | None = None    # [T] or [T, act_dim] the dataset's action
    return_pred: np.ndarray | None = None   # DT: predicted R_{t+1} (return-to-go known)
    truncated: bool = False             # the episode was cut by a time limit: the truth misses what came after
    agree_tol: float = AGREE_TOL        # continuous actions: how close "the greedy action" counts

    @property
    def has_q(self) -> bool:
        return self.q_taken is not None

    @property
    def advantage(self) -> np.ndarray | None:
        """[T] Q(s, a_logged) − V(s): how much better (> 0) or worse than the agent's own value the logged action is."""
        return None if self.q_taken is None else self.q_taken - self.v

    @property
    def agrees(self) -> np.ndarray | None:
        """[T] bool: the logged action is the greedy one (continuous: every dimension within AGREE_TOL, in [-1, 1])."""
        if self.greedy is None:
            return None
        if self.greedy.ndim == 1:
            return self.greedy == self.logged
        return np.all(np.abs(self.greedy - self.logged) <= self.agree_tol, axis=1)

    def to_frame(self) -> pd.DataFrame:
        """One row per step: the values, the advantage, greedy vs logged, the reward and the return-to-go truth."""
        d = {"episode": self.episode, "step": self.steps, "reward": self.rewards.astype(np.float64),
             "return_to_go": self.truth.astype(np.float64), "value": self.v.astype(np.float64)}
        if self.return_pred is not None:
            d["predicted_next_return"] = self.return_pred.astype(np.float64)
        if self.has_q:
            d["q_logged"] = self.q_taken.astype(np.float64)
            d["advantage"] = self.advantage.astype(np.float64)
            if self.greedy.ndim == 1:
                d["logged_action"], d["greedy_action"] = self.logged, self.greedy
            d["agrees"] = self.agrees
        if self.q is not None:
            for j, name in enumerate(self.action_names):
                d[f"q[{name}]"] = self.q[:, j].astype(np.float64)
        return pd.DataFrame(d)


def discount_of(agent) -> float:
    """The discount a value agent was trained with (hparams "discount" or "gamma", else its typed cfg's), 1 if none."""
    hp = getattr(agent.config, "hparams", None) or {}
    cfg = getattr(agent, "cfg", None)
    for v in (hp.get("discount"), hp.get("gamma"), getattr(cfg, "discount", None), getattr(cfg, "gamma", None)):
        if isinstance(v, (int, float)) and 0 < float(v) <= 1:
            return float(v)
    return 1.0


def discounted_return_to_go(rewards, discount: float) -> np.ndarray:
    """G_t = r_t + γ G_{t+1} over one episode (G after the last step = 0), float64."""
    r = np.asarray(rewards, np.float64)
    out = np.zeros(len(r))
    g = 0.0
    for t in range(len(r) - 1, -1, -1):
        g = r[t] + discount * g
        out[t] = g
    return out


def check_episode(dataset, episode) -> tuple[int, int]:
    """(start, end) rows of `episode`, or one sentence saying which episodes exist."""
    n = dataset.n_episodes
    if isinstance(episode, bool) or not isinstance(episode, (int, np.integer)) or not 0 <= int(episode) < n:
        raise ValueError(f"episode must be a whole number from 0 to {n - 1} ({dataset.source} has {n} episodes), "
                         f"got {episode!r}.")
    return int(dataset.episode_starts[episode]), int(dataset.episode_ends[episode])


def _action_names(agent, dataset) -> list[str]:
    if not agent.discrete:
        return []
    n = int(agent.config.n_actions)
    labels = [str(x) for x in (dataset.metadata or {}).get("action_labels") or []]
    return labels if len(labels) == n else [f"action {i}" for i in range(n)]


def value_trace(agent, dataset, episode: int = 0) -> ValueTrace:
    """A value-based agent's values over `episode` of `dataset` (module docstring). AgentError for an agent without
    action values, ValueError for an episode the data does not have or values of the wrong shape."""
    if not agent.has("q_values"):
        raise AgentError(f"Q(s, a) and the advantage need a value-based agent; a {agent.kind} agent has no Q-values"
                         f"{' (its value head is in the value_trace figure)' if agent.has('value') else ''}.")
    check_dataset(agent, dataset)
    start, end = check_episode(dataset, episode)
    obs, actions = dataset.observations[start:end], dataset.actions[start:end]
    out = agent.episode_values(obs, actions)
    T = end - start
    q = None if out.get("q") is None else np.asarray(out["q"], np.float64)
    v, q_taken = np.asarray(out["v"], np.float64), np.asarray(out["q_taken"], np.float64)
    greedy = np.asarray(out["greedy"])
    want = {"v": (v, (T,)), "q_taken": (q_taken, (T,)),
            "greedy": (greedy, (T,) if agent.discrete else (T, agent.act_dim))}
    if agent.discrete:
        want["q"] = (q, (T, int(agent.config.n_actions)))
    for name, (arr, shape) in want.items():
        if arr is None or arr.shape != shape:
            raise ValueError(f"the agent's episode_values gave {name} of shape "
                             f"{None if arr is None else tuple(arr.shape)}; expected {shape} for a {T}-step episode.")
    if agent.discrete:
        logged = np.asarray(actions, np.int64)
        greedy = greedy.astype(np.int64)
    else:   # compared in [-1, 1] units, so one tolerance fits every action box
        logged = agent.actions_to_unit(torch.as_tensor(np.asarray(actions, np.float32)).reshape(T, -1)).numpy()
        greedy = agent.actions_to_unit(torch.as_tensor(greedy, dtype=torch.float32)).numpy()
    gamma = discount_of(agent)
    rewards = np.asarray(dataset.rewards[start:end], np.float64)
    return ValueTrace(agent.kind, int(episode), np.arange(T), v, rewards, discounted_return_to_go(rewards, gamma), gamma,
                      _action_names(agent, dataset), q, q_taken, greedy, logged,
                      truncated=bool(dataset.truncated[end - 1]))


def dt_value_trace(dt, dataset, episode: int = 0) -> ValueTrace:
    """A Decision Transformer's value head (return-to-go hidden) and return prediction R_{t+1} on every step of
    `episode`, in raw return units, from windows of its context ending at each step (module docstring)."""
    if not (dt.has("value") and dt.has("return") and dt.has("step_tokens")):
        raise AgentError(f"the value head and return prediction belong to a Decision Transformer; a {dt.kind} agent has "
                         "neither.")
    start, end = check_episode(dataset, episode)
    data = training_data(dt, dataset)
    steps = episode_steps(data, int(episode))
    n = window_rows(dt, data, 512)
    value, ret = [], []
    with inference(dt):
        for i in range(0, len(steps), n):
            inputs = step_windows(dt, data, steps[i:i + n])
            value.append(dt(**inputs, rtg_known=False).value_preds[:, -1, 0].double().numpy())
            ret.append(dt(**inputs).return_preds[:, -1, 0].double().numpy())
    scale = float(dt.config.rtg_scale)
    rewards = np.asarray(dataset.rewards[start:end], np.float64)
    return ValueTrace(dt.kind, int(episode), np.arange(end - start), np.concatenate(value) * scale, rewards,
                      discounted_return_to_go(rewards, 1.0), 1.0, _action_names(dt, dataset),
                      return_pred=np.concatenate(ret) * scale, truncated=bool(dataset.truncated[end - 1]))


def any_value_trace(agent, dataset, episode: int = 0) -> ValueTrace:
    """`value_trace` for a value-based agent, `dt_value_trace` for a Decision Transformer; one sentence otherwise."""
    if agent.has("q_values"):
        return value_trace(agent, dataset, episode)
    if agent.has("value") and agent.has("return") and agent.has("step_tokens"):
        return dt_value_trace(agent, dataset, episode)
    raise AgentError(f"the value views need a value-based agent (Q and V) or a Decision Transformer (value head); "
                     f"a {agent.kind} agent has neither.")
