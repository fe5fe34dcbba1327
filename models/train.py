"""One training loop for every agent kind: AdamW, warm-up + cosine decay, gradient clipping, a progress
bar with the loss and steps/s, periodic evaluation, deterministic by seed."""
from __future__ import annotations

import math
import sys
import time

import gymnasium as gym
import numpy as np
import torch
from tqdm import tqdm

import envs  # noqa: F401 - registers seqlens' environments
from trajectories import Dataset

from .base import Agent, AgentConfig
from .loading import agent_class
from .hparams import TRAIN_DEFAULTS, resolve
from .windows import TrainingData

VECTOR_ONLY = {"tt": "The Trajectory Transformer's discretizer", "mlp": "The MLP baseline", "gru": "The GRU baseline",
               "dynamics": "The dynamics model", "q": "The Q-network", "drqn": "The recurrent Q-network",
               "cq": "The continuous value learner (IQL / CQL)"}
DEFAULTS = TRAIN_DEFAULTS   # models/hparams.py: TrainConfig per kind (context length, batch size, lr, ...)


# Shaped observations are never copied whole to float (7 GB of uint8 Atari frames would become 28 GB).
# Images and frame stacks: a fixed scale, /255 as the DT paper's Atari code. MiniGrid grids (at most 32 cells a side,
# so obs_dim is small): per-cell mean and std accumulated over row blocks of STATS_ROWS (float64 sums of one block at a
# time), because a fixed scale leaves the view's constant walls and floor in every input: measured on the memory task,
# an MLP given the step-0 view, the split view and the return stays at chance (loss 0.692 after 1,000 full-batch
# steps) with codes as they are, and is exact with per-cell standardisation (the DT did not learn the task within
# 3,000 steps with either: README, "The MiniGrid memory example").
IMAGE_SCALE = 255.0
STATS_ROWS = 65_536
ATARI_SHAPE = (4, 84, 84)


def shaped_scale(ds: Dataset) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std per observation value (obs_dim of each: models/windows.py lays them out in the observation's
    shape): grids' per-cell statistics streamed in blocks; other uint8 observations 0 and 255; float ones 0 and 1."""
    obs = ds.flat_observations
    if ds.obs_kind == "grids":
        total, squares = np.zeros(ds.obs_dim), np.zeros(ds.obs_dim)
        for i in range(0, len(obs), STATS_ROWS):
            block = obs[i:i + STATS_ROWS].astype(np.float64)
            total += block.sum(0)
            squares += np.square(block).sum(0)
        mean = total / max(len(obs), 1)
        std = np.sqrt(np.maximum(squares / max(len(obs), 1) - np.square(mean), 0.0))
        return mean, np.where(std > 1e-6, std, 1.0)
    value = IMAGE_SCALE if obs.dtype == np.uint8 else 1.0
    return np.zeros(ds.obs_dim), np.full(ds.obs_dim, value)


def shaped_hparams(ds: Dataset) -> dict:
    """The DT's state encoder chosen from the shape: the DT paper's conv stack for 4x84x84 frame stacks, else DTI's
    bias-free Linear over the observation flattened in its own order (MiniGrid views HxWx3, one-hot HxWx20)."""
    encoder = "atari_conv" if tuple(ds.obs_shape) == ATARI_SHAPE else "grid"
    return {"obs_shape": list(ds.obs_shape), "state_encoder": encoder}


def make_config(kind: str, ds: Dataset, context_length: int | None = None, hparams: dict | None = None,
                rtg_scale: float | None = None, dataset_name: str | None = None) -> AgentConfig:
    """Dims, normalisation, RTG scale, episode length and action bounds, all read off the data (and the env)."""
    if kind not in DEFAULTS:
        raise ValueError(f"unknown model '{kind}' (expected one of {', '.join(DEFAULTS)}).")
    if kind in VECTOR_ONLY:   # per-dimension models: one sentence on images instead of a shape error in torch
        ds.require_vectors(VECTOR_ONLY[kind])
    returns = ds.episode_returns
    max_ep_len = int(ds.episode_lengths.max())
    low = high = None
    if ds.env_id:
        try:
            spec = gym.spec(envs.check_env_id(ds.env_id))
            env = envs.make(ds.env_id)
            # MiniGrid (DTI's ids) registers no time limit: the env's own max_steps ends its episodes
            limit = spec.max_episode_steps or getattr(env.unwrapped, "max_steps", 0)
            max_ep_len = max(max_ep_len, int(limit or 0))
            space = env.action_space
            if isinstance(space, gym.spaces.Box):
                low, high = space.low.astype(float).tolist(), space.high.astype(float).tolist()
        except gym.error.Error:
            pass  # an env gymnasium does not know: bounds from the data
    if not ds.discrete and low is None:
        low, high = ds.actions.min(0).astype(float).tolist(), ds.actions.max(0).astype(float).tolist()
    if ds.shaped:   # no per-pixel statistics: they would copy the whole (maybe mapped) array to float
        mean, std = shaped_scale(ds)
        hparams = {**shaped_hparams(ds), **(hparams or {})}
    else:
        mean, std = ds.observations.mean(0).astype(float), ds.observations.std(0)
        std = np.where(std > 1e-6, std, 1.0)
    # One scale for training and evaluation: returns-to-go of order 1 (DT: 1000 for MuJoCo, 500 for CartPole).
    scale = rtg_scale or float(max(np.abs(returns).max(), 1e-6))
    return AgentConfig(
        kind=kind, obs_dim=ds.obs_dim, act_dim=ds.act_dim, discrete=ds.discrete, n_actions=ds.n_actions,
        context_length=int(context_length or DEFAULTS[kind].context_length), max_ep_len=max_ep_len,
        rtg_scale=scale, state_mean=np.asarray(mean, float).tolist(), state_std=np.asarray(std, float).tolist(),
        action_low=low, action_high=high, env_id=ds.env_id, hparams=resolve(kind, hparams),
        dataset={"name": dataset_name or ds.source, "fingerprint": ds.fingerprint(), "n_episodes": ds.n_episodes,
                 "n_transitions": ds.n_transitions, "return_min": float(returns.min()),
                 "return_median": float(np.median(returns)), "return_max": float(returns.max())})


def train(kind: str, ds: Dataset, steps: int = 2000, seed: int = 0, context_length: int | None = None,
          batch_size: int | None = None, lr: float | None = None, hparams: dict | None = None,
          eval_every: int = 0, eval_fn=None, progress: bool = True, dataset_name: str | None = None,
          rtg_scale: float | None = None) -> Agent:
    """Train an agent of `kind` on `ds`. eval_fn(agent, step) -> str runs every eval_every steps; it may return
    (str, stop): stop True ends training there (a recipe's "train until" rule; `steps` is then the cap, and the
    warm-up and cosine decay are laid over the cap)."""
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}.")
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    config = make_config(kind, ds, context_length, hparams, rtg_scale, dataset_name)
    cls = agent_class(kind)
    agent = cls.for_dataset(config, ds) if hasattr(cls, "for_dataset") else cls(config)
    data = agent.prepare_training(TrainingData.build(ds, config.state_mean, config.state_std, config.rtg_scale,
                                                     config.max_ep_len, getattr(agent, "obs_transform", None)))
    run = DEFAULTS[kind]
    batch_size = batch_size or run.batch_size
    lr = lr or run.lr
    decay = [p for n, p in agent.named_parameters() if p.dim() >= 2 and "embed" not in n]
    no_decay = [p for n, p in agent.named_parameters() if not (p.dim() >= 2 and "embed" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": run.weight_decay}, {"params": no_decay, "weight_decay": 0.0}], lr=lr)
    warmup = max(1, min(run.warmup_max, steps // 10))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warmup) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, s / steps)))))
    agent.train()
    t0 = time.perf_counter()
    bar = tqdm(range(steps), desc=f"train {kind}", file=sys.stderr, disable=not progress, unit="step")
    ema, evals, trained = None, [], steps
    for step in bar:
        loss, metrics = agent.loss(agent.sample_batch(data, batch_size, rng))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(agent.parameters(), run.grad_clip)
        opt.step()
        sched.step()
        value = loss.item()
        ema = value if ema is None else 0.98 * ema + 0.02 * value
        if progress and step % 20 == 0:
            bar.set_postfix(loss=f"{ema:.4f}", steps_per_s=f"{(step + 1) / (time.perf_counter() - t0):.1f}")
        if eval_fn and eval_every and (step + 1) % eval_every == 0 and step + 1 < steps:
            agent.eval()
            msg = eval_fn(agent, step + 1)
            msg, stop = msg if isinstance(msg, tuple) else (msg, False)
            agent.train()
            evals.append({"step": step + 1, "result": msg})
            if progress:
                tqdm.write(f"step {step + 1}: {msg}", file=sys.stderr)
            if stop:
                trained = step + 1
                break
    agent.eval()
    config = agent.config  # the model may complete the config (hparam defaults)
    config.training = {"steps": trained, "seed": seed, "n_params": agent.n_params, "batch_size": batch_size, "lr": lr, "final_loss": ema,
                       "final_metrics": metrics, "seconds": round(time.perf_counter() - t0, 1),
                       "torch_threads": torch.get_num_threads(), "periodic_evaluation": evals}
    return agent
