"""DTI's evaluation protocol (jbloomAus/DecisionTransformerInterpretability), re-implemented standalone for tests.

Written from DTI's source, independently of seqlens' rollout (models/rollout.py, models/dt_rollout.py):
- src/decision_transformer/eval.py `evaluate_dt_agent`: the action is the argmax of `action_preds[:, -1]` (greedy);
  after each step the new observation's image is appended to the window, the return-to-go drops by the reward
  (`new_rtg = rtg[:, -1:] - new_reward`, no scale), the timestep grows by one, the action taken is appended to the
  actions; the window keeps the last max_len states, rtgs and timesteps and the last max_len - 1 actions.
- src/decision_transformer/utils.py `get_max_len_from_model_type` (a decision transformer's window is
  max_len = 1 + n_ctx // 3 steps) and `initialize_padding_inputs` (the first window: max_len - 1 zero observations
  before the first one, every return-to-go the initial one, timesteps 0, max_len - 1 pad actions `n_actions`).
- src/decision_transformer/train.py: the evaluation env's `max_steps` is the model's environment_config max_steps
  (capped by eval_max_time_steps, 1,000 by default); one-hot observations where environment_config says one_hot_obs.

DTI's eval runs a vector env whose episodes restart unseeded after the first; here each episode is its own env reset
with its own seed, so episode i is the same episode however many run. The env is made here from gymnasium's
registry (`envs` registers DTI's Memory ids) with minigrid's OneHotPartialObsWrapper, not through
envs/minigrid_dti.make_dti_env or models/rollout.make_agent_env.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import torch

from dti_reference import DTIReference


@dataclass
class Episode:
    seed: int
    ret: float
    length: int
    actions: list
    end: str | None   # Memory: "match" / "wrong" (the cell beside which object the episode ended), else None


def load(path) -> tuple[DTIReference, dict, dict]:
    """A DTI checkpoint -> (the reference module in eval mode, model_config, environment_config)."""
    obj = torch.load(path, weights_only=True)
    mc, ec = json.loads(obj["model_config"]), json.loads(obj["environment_config"])
    state = obj["model_state_dict"]
    n_actions, n_obs = state["action_predictor.weight"].shape[0], state["state_embedding.weight"].shape[1]
    v = ec.get("view_size", 7)
    shape = (v, v, n_obs // (v * v))
    ref = DTIReference(mc, n_actions, shape, ec["max_steps"])
    ref.load_state_dict(state)
    return ref.eval(), mc, ec


def make_env(env_config: dict):
    import gymnasium as gym
    from minigrid.wrappers import OneHotPartialObsWrapper

    import envs  # noqa: F401 - registers DTI's Memory ids

    assert env_config.get("view_size", 7) == 7 and not env_config.get("fully_observed")
    env = gym.make(env_config["env_id"], max_steps=int(env_config["max_steps"]))
    return OneHotPartialObsWrapper(env) if env_config.get("one_hot_obs") else env


def _memory_end(env) -> str | None:
    u = env.unwrapped
    if not hasattr(u, "success_pos"):
        return None
    pos = tuple(int(x) for x in u.agent_pos)
    return "match" if pos == tuple(u.success_pos) else "wrong" if pos == tuple(u.failure_pos) else None


@torch.no_grad()
def run_episode(ref: DTIReference, model_config: dict, env_config: dict, seed: int, initial_rtg: float,
                decrement_rtg: bool = True, pad: bool = True, pad_rtg: float | None = None) -> Episode:
    """One greedy episode under DTI's protocol (see the module docstring). Broken variants, which tests use to show
    that the protocol's details change what the agent does: decrement_rtg=False (the return-to-go kept at the
    target), pad=False (windows of the real steps only), pad_rtg (the pads' return-to-go, as DTI's training pads it
    with 0, instead of the initial one)."""
    max_len = 1 + model_config["n_ctx"] // 3
    n_actions = ref.n_actions
    env = make_env(env_config)
    obs, _ = env.reset(seed=int(seed))
    shape = obs["image"].shape
    states = torch.cat([torch.zeros(1, max_len - 1, *shape), torch.as_tensor(obs["image"]).float()[None, None]], 1)
    rtg = torch.full((1, max_len, 1), float(initial_rtg))
    if pad_rtg is not None:
        rtg[:, :-1] = float(pad_rtg)
    timesteps = torch.zeros(1, max_len, 1, dtype=torch.long)
    actions = torch.full((1, max_len - 1, 1), n_actions, dtype=torch.long) if max_len > 1 else None
    if not pad:
        states, rtg, timesteps, actions = states[:, -1:], rtg[:, -1:], timesteps[:, -1:], None
    total, taken, done = 0.0, [], False
    while not done:
        _, action_preds, _ = ref(states, actions, rtg, timesteps)
        action = int(action_preds[0, -1].argmax())
        obs, reward, terminated, truncated, _ = env.step(action)
        total += float(reward)
        taken.append(action)
        done = terminated or truncated
        states = torch.cat([states, torch.as_tensor(obs["image"]).float()[None, None]], 1)[:, -max_len:]
        rtg = torch.cat([rtg, rtg[:, -1:] - (float(reward) if decrement_rtg else 0.0)], 1)[:, -max_len:]
        timesteps = torch.cat([timesteps, timesteps[:, -1:] + 1], 1)[:, -max_len:]
        if max_len > 1:
            new = torch.tensor([[[action]]])
            actions = (new if actions is None else torch.cat([actions, new], 1))[:, -(max_len - 1):]
    end = _memory_end(env)
    env.close()
    return Episode(int(seed), total, len(taken), taken, end)


def evaluate(ref, model_config: dict, env_config: dict, seeds, initial_rtg: float, **variant) -> list[Episode]:
    return [run_episode(ref, model_config, env_config, s, initial_rtg, **variant) for s in seeds]
