"""Online DQN (Mnih et al. 2015, with double-DQN targets): a kind "q" agent learning in a gymnasium vector env from a
replay buffer, epsilon-greedy, with a target network. Deterministic by seed with one torch thread: env resets
(seed + i), exploration and replay draws come from one numpy generator seeded with `seed`, weights from torch's.

Why not models/train.py's loop: that loop draws every batch from a fixed TrainingData; here the data grows with the
agent's own acting between updates. The update itself is the offline one (ValueAgent.td_target / td_batch_loss with
alpha 0), with the same optimiser family (AdamW, gradient clipping)."""
from __future__ import annotations

import math
import sys
import time

import gymnasium as gym
import numpy as np
import torch
from tqdm import tqdm

import envs

from .base import AgentConfig
from .hparams import TRAIN_DEFAULTS, resolve
from .q_network import QNetwork
from .rollout import episode_limit


def train_online(kind: str, env_id: str, steps: int = 50_000, seed: int = 0, hparams: dict | None = None,
                 batch_size: int | None = None, lr: float | None = None, reward_scale: float = 1.0,
                 progress: bool = True, eval_every: int = 0, eval_fn=None) -> QNetwork:
    """A "q" agent trained for `steps` environment steps (over all n_envs) in `env_id`. reward_scale: the config's
    rtg_scale (rewards are divided by it for the loss; 1: raw rewards, as DQN). eval_fn(agent, step) -> str runs every
    eval_every environment steps."""
    if kind != "q":
        raise ValueError(f"online training learns a kind 'q' agent (DQN); got '{kind}'.")
    h = resolve("q", {"method": "dqn", **(hparams or {})})
    if h["method"] != "dqn":
        raise ValueError(f"train_online runs DQN (method 'dqn'); method '{h['method']}' learns offline through "
                         "models.train.train.")
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}.")
    obs_space, act_space = envs.env_spaces(env_id)
    if not isinstance(act_space, gym.spaces.Discrete) or not isinstance(obs_space, gym.spaces.Box) \
            or len(obs_space.shape) != 1:
        raise ValueError(f"online DQN needs vector observations and discrete actions; {env_id} has "
                         f"{type(obs_space).__name__} observations and {type(act_space).__name__} actions.")
    run = TRAIN_DEFAULTS["q"]
    batch_size, lr = batch_size or run.batch_size, lr or run.lr
    if steps <= max(h["learning_starts"], batch_size) + h["n_envs"] * h["train_every"]:
        raise ValueError(f"{steps} steps would run no update: the first comes after learning_starts "
                         f"({h['learning_starts']}) steps and a batch ({batch_size}) of transitions; give more steps.")
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    n_envs, obs_dim, n_act = h["n_envs"], int(obs_space.shape[0]), int(act_space.n)
    # no state statistics: there is no dataset to take them from, and the first random steps are not the states a
    # good policy visits (CartPole's random episodes last ~20 steps near the centre)
    config = AgentConfig(kind="q", obs_dim=obs_dim, act_dim=1, discrete=True, n_actions=n_act, context_length=1,
                         max_ep_len=episode_limit(env_id), rtg_scale=float(reward_scale), env_id=env_id, hparams=h,
                         dataset={"name": f"online in {env_id}", "n_transitions": int(steps)})
    agent = QNetwork(config)
    target = agent.target_copy()
    opt = torch.optim.AdamW(agent.parameters(), lr=lr, weight_decay=0.0)
    cap = h["buffer_size"]
    buf_obs, buf_next = np.zeros((cap, obs_dim), np.float32), np.zeros((cap, obs_dim), np.float32)
    buf_act, buf_rew, buf_term = np.zeros(cap, np.int64), np.zeros(cap, np.float32), np.zeros(cap, bool)
    size = pos = updates = 0
    vec = envs.make_vec(env_id, num_envs=n_envs, vectorization_mode="sync")
    t0 = time.perf_counter()
    metrics, evals, episode_returns = {}, [], []
    ret = np.zeros(n_envs)
    bar = tqdm(total=steps, desc="train q (dqn)", file=sys.stderr, disable=not progress, unit="step")
    try:
        obs, _ = vec.reset(seed=seed)
        resetting = np.zeros(n_envs, bool)   # gymnasium's next-step autoreset: this step only resets those envs
        done_steps = 0
        while done_steps < steps:
            eps = _epsilon(h, done_steps, steps)
            explore = (rng.random(n_envs) < eps) | (done_steps < h["learning_starts"])
            random_actions = rng.integers(0, n_act, size=n_envs)
            with torch.no_grad():
                greedy = agent(agent.normalize(torch.as_tensor(obs, dtype=torch.float32))).argmax(-1).numpy()
            actions = np.where(explore, random_actions, greedy)
            nxt, rewards, term, trunc, _ = vec.step(actions)
            for i in np.flatnonzero(~resetting):   # a truncated step is kept: its next observation is real
                buf_obs[pos], buf_next[pos], buf_act[pos] = obs[i], nxt[i], actions[i]
                buf_rew[pos], buf_term[pos] = rewards[i], term[i]
                pos, size = (pos + 1) % cap, min(size + 1, cap)
            ret = np.where(resetting, 0.0, ret + rewards)
            ended = (term | trunc) & ~resetting
            episode_returns += ret[ended].tolist()
            resetting = ended
            obs = nxt
            done_steps += n_envs
            bar.update(n_envs)
            if done_steps >= h["learning_starts"] and (done_steps // n_envs) % h["train_every"] == 0 and size >= batch_size:
                for g in opt.param_groups:   # the offline loop's cosine decay to 0.1 lr, over env steps: late
                    g["lr"] = lr * _decay(done_steps / steps)   # updates on a full buffer stop undoing the policy
                agent.update_target(target, updates)
                j = rng.integers(0, size, size=batch_size)
                o, nx = agent.normalize(torch.from_numpy(buf_obs[j])), agent.normalize(torch.from_numpy(buf_next[j]))
                with torch.no_grad():
                    y = agent.td_target(buf_rew[j], buf_term[j], agent(nx) / agent.q_scale, target(nx) / agent.q_scale)
                loss, metrics = agent.td_batch_loss(agent(o), torch.from_numpy(buf_act[j]), y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(agent.parameters(), run.grad_clip)
                opt.step()
                updates += 1
            if progress and done_steps % (50 * n_envs) == 0 and episode_returns:
                bar.set_postfix(eps=f"{eps:.2f}", ret=f"{np.mean(episode_returns[-20:]):.1f}")
            if eval_fn and eval_every and done_steps % eval_every < n_envs and done_steps < steps:
                evals.append({"step": done_steps, "result": eval_fn(agent, done_steps)})
    finally:
        vec.close()
        bar.close()
    agent.eval()
    agent.config.training = {"steps": steps, "seed": seed, "online": True, "updates": updates, "n_params": agent.n_params,
                             "batch_size": batch_size, "lr": lr, "final_metrics": metrics,
                             "final_loss": metrics.get("td_loss"), "episodes": len(episode_returns),
                             "last_20_episode_return": float(np.mean(episode_returns[-20:])) if episode_returns else None,
                             "seconds": round(time.perf_counter() - t0, 1), "torch_threads": torch.get_num_threads(),
                             "periodic_evaluation": evals}
    return agent


def _decay(frac: float) -> float:
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, frac)))


def _epsilon(h: dict, step: int, steps: int) -> float:
    """eps_start, falling linearly to eps_end over eps_fraction of the run (after learning_starts' random steps)."""
    span = max(1.0, h["eps_fraction"] * steps)
    frac = min(1.0, max(0, step - h["learning_starts"]) / span)
    return float(h["eps_start"] + frac * (h["eps_end"] - h["eps_start"]))
