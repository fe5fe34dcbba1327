"""A scripted Breakout policy that reads the frame, for the shipped Atari dataset (`envs.behaviour.breakout_dataset`).

It sees what a DT sees: the newest 84x84 frame of the DT paper's observation (envs/atari.py). The ball is the lit
pixels between the bricks and the paddle, the paddle the lit pixels of its two rows; the policy moves the paddle
under the ball and presses FIRE when no ball is in play (at the start and after each lost life). Per episode a share
`eps` of its steps are uniform random actions instead: at eps near 0 it clears a few rows of bricks, near 1 it plays
like a random agent, so the episodes' returns spread from 0 up (what return conditioning needs to be seen at all).
"""
from __future__ import annotations

import numpy as np

NOOP, FIRE, RIGHT, LEFT = 0, 1, 2, 3       # Breakout's minimal action set
BALL_ROWS = slice(37, 75)                  # below the lowest brick row (23..36), above the paddle (75..76)
PADDLE_ROWS = slice(75, 77)
INSIDE = slice(4, 80)                      # between the side walls (columns 0..3 and 80..83 are wall)
DEAD_ZONE = 2                              # pixels the paddle's centre may be off the ball's without moving


def ball_and_paddle(frame: np.ndarray) -> tuple[float | None, float | None]:
    """The ball's and the paddle's column in one 84x84 frame (None where not in view)."""
    ball = np.flatnonzero(frame[BALL_ROWS, INSIDE].max(axis=0) > 0)
    paddle = np.flatnonzero(frame[PADDLE_ROWS, INSIDE].max(axis=0) > 0)
    as_col = (lambda cols: float(cols.mean()) + INSIDE.start if len(cols) else None)
    return as_col(ball), as_col(paddle)


def tracking_action(frame: np.ndarray) -> int:
    """FIRE with no ball in play, else the move that brings the paddle under the ball (NOOP when under it)."""
    ball, paddle = ball_and_paddle(frame)
    if ball is None or paddle is None:
        return FIRE
    if ball > paddle + DEAD_ZONE:
        return RIGHT
    if ball < paddle - DEAD_ZONE:
        return LEFT
    return NOOP


def breakout_episodes(n_episodes: int, seed: int = 0, eps_range: tuple[float, float] = (0.0, 1.0),
                      max_steps: int = 400) -> dict[str, np.ndarray]:
    """Per-step arrays of `n_episodes` in seqlens/DTAtari-Breakout-v0 (the paper's 4x84x84 uint8 stacks): frames
    uint8 [N, 84, 84] (each step's newest frame; the stacks are rebuilt by `stacks`), actions int64, rewards float32,
    terminated / truncated bool, episode_starts int64 [E], and per episode its eps and no-op count. An episode ends
    at game over or after `max_steps` steps (truncated)."""
    from envs.atari import make_atari

    env = make_atari("Breakout", render_mode=None)
    rng = np.random.default_rng(seed)
    cols = {k: [] for k in ("frames", "actions", "rewards", "terminated", "truncated")}
    starts, eps_log, noops = [], [], []
    for e in range(n_episodes):
        obs, _ = env.reset(seed=int(seed * 1_000_003 + e))
        eps = float(rng.uniform(*eps_range))
        starts.append(len(cols["actions"]))
        eps_log.append(eps)
        noops.append(int(env.env.noops))   # env.env: the DTAtariFrames under the frame stack
        for t in range(max_steps):
            action = int(rng.integers(4)) if rng.random() < eps else tracking_action(obs[-1])
            cols["frames"].append(obs[-1])
            obs, reward, term, trunc, _ = env.step(action)
            trunc = trunc or t == max_steps - 1
            cols["actions"].append(action)
            cols["rewards"].append(reward)
            cols["terminated"].append(term)
            cols["truncated"].append(trunc and not term)
            if term or trunc:
                break
    env.close()
    return {"frames": np.asarray(cols["frames"], np.uint8), "actions": np.asarray(cols["actions"], np.int64),
            "rewards": np.asarray(cols["rewards"], np.float32), "terminated": np.asarray(cols["terminated"], bool),
            "truncated": np.asarray(cols["truncated"], bool), "episode_starts": np.asarray(starts, np.int64),
            "eps": np.asarray(eps_log), "noops": np.asarray(noops, np.int64)}


def stacks(frames: np.ndarray, episode_starts: np.ndarray, depth: int = 4) -> np.ndarray:
    """[N, depth, H, W] frame stacks from each step's newest frame: zero frames before an episode's first, as the
    env's zero-padded FrameStackObservation gives them (so stacks(frames) equals the observations the env gave)."""
    n = len(frames)
    out = np.zeros((n, depth, *frames.shape[1:]), frames.dtype)
    bounds = list(episode_starts) + [n]
    for s, e in zip(bounds[:-1], bounds[1:]):
        for k in range(depth):   # slot depth-1-k holds the frame k steps back
            out[s + k:e, depth - 1 - k] = frames[s:max(s, e - k)]
    return out
