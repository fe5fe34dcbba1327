"""A behaviour policy for DTI's Memory environment (MiniGrid-MemoryS7FixedStart-v0), for the shipped memory dataset.

The task is a memory test: the cue (a key or a ball) is in view at the first step only (the agent starts beside it,
facing the hallway); at the split, both end objects are in view and the cue is not. A return-conditioned agent
trained on these episodes can choose the matching end only by carrying the cue from step 0, which is the story
DTI's MemoryDT write-up tells. The policy walks the shortest path (breadth-first over cell x direction) to the end it
chose: the matching one with probability `p_match`, else the other, so the dataset holds both returns (~1 and 0);
with probability `eps` a step is a random turn or forward instead, so the episodes differ in length and timing.
"""
from __future__ import annotations

from collections import deque

import numpy as np

LEFT, RIGHT, FORWARD = 0, 1, 2
_DIRS = ((1, 0), (0, 1), (-1, 0), (0, -1))   # MiniGrid's direction 0..3: right, down, left, up


def _passable(env, x: int, y: int) -> bool:
    cell = env.grid.get(x, y)
    return cell is None or cell.can_overlap()


def next_action(env, target: tuple[int, int]) -> int:
    """The first action of a shortest (turns count as steps) path from the agent's cell and direction to `target`."""
    start = (int(env.agent_pos[0]), int(env.agent_pos[1]), int(env.agent_dir))
    first: dict[tuple, int | None] = {start: None}
    queue = deque([start])
    while queue:
        x, y, d = state = queue.popleft()
        if (x, y) == tuple(target):
            return FORWARD if first[state] is None else first[state]
        dx, dy = _DIRS[d]
        moves = [(LEFT, (x, y, (d - 1) % 4)), (RIGHT, (x, y, (d + 1) % 4))]
        if _passable(env, x + dx, y + dy) or (x + dx, y + dy) == tuple(target):
            moves.append((FORWARD, (x + dx, y + dy, d)))
        for action, nxt in moves:
            if nxt not in first:
                first[nxt] = action if first[state] is None else first[state]
                queue.append(nxt)
    raise ValueError(f"no path from {start[:2]} to {target}")


class EpisodeColumns:
    """Per-step columns of MiniGrid behaviour episodes (this module's and envs/dynamic_obstacles_expert.py's), one
    episode at a time: the view and direction acted on, the action (a uniform random turn or forward with probability
    eps, else the policy's), reward, terminated, truncated (only where not terminated)."""

    def __init__(self):
        self.cols = {k: [] for k in ("image", "direction", "actions", "rewards", "terminated", "truncated")}
        self.starts: list[int] = []

    def run(self, env, obs, policy, rng: np.random.Generator, eps: float) -> None:
        cols = self.cols
        self.starts.append(len(cols["actions"]))
        done = False
        while not done:
            action = int(rng.integers(0, 3)) if rng.random() < eps else policy()
            cols["image"].append(obs["image"])
            cols["direction"].append(obs["direction"])
            obs, reward, term, trunc, _ = env.step(action)
            cols["actions"].append(action)
            cols["rewards"].append(reward)
            cols["terminated"].append(term)
            cols["truncated"].append(trunc and not term)
            done = term or trunc

    def arrays(self) -> dict[str, np.ndarray]:
        c = self.cols
        return {"image": np.asarray(c["image"], np.uint8), "direction": np.asarray(c["direction"], np.int64),
                "actions": np.asarray(c["actions"], np.int64), "rewards": np.asarray(c["rewards"], np.float32),
                "terminated": np.asarray(c["terminated"], bool), "truncated": np.asarray(c["truncated"], bool),
                "episode_starts": np.asarray(self.starts, np.int64)}


def memory_episodes(n_episodes: int, seed: int = 0, p_match: float = 0.7, eps: float = 0.05,
                    max_steps: int = 40, one_hot_obs: bool = True) -> dict[str, np.ndarray]:
    """Per-step arrays of `n_episodes` behaviour episodes in MiniGrid-MemoryS7FixedStart-v0 (7x7 partial views as
    DTI's agents see them, one-hot as DTI's MemoryDT saw them (20 bits a cell), or the 3 codes with one_hot_obs
    False): image uint8 [N, 7, 7, 20 | 3], direction int64 [N], actions int64 [N], rewards float32 [N],
    terminated / truncated bool [N], episode_starts int64 [E], and per episode the cue ("key" / "ball"),
    whether the chosen end matched it, and the step the cue was last in view."""
    from envs.minigrid_dti import make_dti_env

    env = make_dti_env("MiniGrid-MemoryS7FixedStart-v0", max_steps=max_steps, one_hot_obs=one_hot_obs,
                       render_mode=None)
    rng = np.random.default_rng(seed)
    episodes = EpisodeColumns()
    cue, matched = [], []
    for e in range(n_episodes):
        obs, _ = env.reset(seed=int(seed * 1_000_003 + e))
        u = env.unwrapped
        match = bool(rng.random() < p_match)
        target = u.success_pos if match else u.failure_pos
        cue.append(u.target_obj)
        matched.append(match)
        episodes.run(env, obs, lambda: next_action(u, target), rng, eps)
    env.close()
    return {**episodes.arrays(), "cue": np.asarray(cue), "matched": np.asarray(matched)}
