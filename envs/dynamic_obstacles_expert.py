"""A behaviour policy for MiniGrid's Dynamic-Obstacles (`MiniGrid-Dynamic-Obstacles-8x8-v0`, the env DTI's
Dynamic-Obstacles agents name), for a DTI-format agent's training data (bench/dti_agents.py).

The env's rule (minigrid's DynamicObstaclesEnv.step): the cell in front is read before the balls move; stepping
forward into a ball or a wall there ends the episode with -1. Reaching the goal gives 1 - 0.9 * steps / max_steps.
The policy walks a shortest path (breadth-first over cell x direction, turns count as steps) to the goal around the
balls where they stand now, and never steps forward into what is in front of it (it turns instead). With
probability `eps` a step is a uniformly random action instead, which may walk into a ball or a wall: the data then
holds successes (return near 1), collisions (-1) and, rarely, time-outs (0).
"""
from __future__ import annotations

import numpy as np

from .memory_expert import FORWARD, LEFT, RIGHT, EpisodeColumns, next_action

ENV_ID = "MiniGrid-Dynamic-Obstacles-8x8-v0"


def _front_blocked(env) -> bool:
    cell = env.grid.get(*env.front_pos)
    return cell is not None and cell.type != "goal"


def _goal(env) -> tuple[int, int]:
    return env.width - 2, env.height - 2   # DynamicObstaclesEnv puts its goal in the bottom-right corner


def expert_action(env) -> int:
    """The shortest path's first action around the balls where they are; a turn where forward would collide or no
    path exists (the balls move every step, so one usually opens)."""
    try:
        action = next_action(env, _goal(env))
    except ValueError:
        action = LEFT
    if action == FORWARD and _front_blocked(env):
        action = RIGHT
    return action


def dynamic_obstacles_episodes(n_episodes: int, seed: int = 0, eps: float = 0.1, max_steps: int = 64,
                               env_id: str = ENV_ID) -> dict[str, np.ndarray]:
    """Per-step arrays of `n_episodes` behaviour episodes (7x7x3 partial views, as DTI's agents see them): image
    uint8 [N, 7, 7, 3], direction int64 [N], actions int64 [N], rewards float32 [N], terminated / truncated bool [N],
    episode_starts int64 [E]. Episode e is reset with seed `seed * 1_000_003 + e`."""
    from envs.minigrid_dti import make_dti_env

    env = make_dti_env(env_id, max_steps=max_steps, render_mode=None)
    rng = np.random.default_rng(seed)
    episodes = EpisodeColumns()
    for e in range(n_episodes):
        obs, _ = env.reset(seed=int(seed * 1_000_003 + e))
        u = env.unwrapped
        episodes.run(env, obs, lambda: expert_action(u), rng, eps)
    env.close()
    return episodes.arrays()
