"""Key-to-Door with a cue: memory in acting, not only in credit (issue 24, item 3).

In Key-to-Door (envs/key_to_door.py) a policy with no memory succeeds every time: pick up the key whenever it is
visible, walk to the door whenever it is visible. Here the key has one of two colours, drawn per episode; phase 3
has two doors, one of each colour, and only the door of the key's colour pays (reaching either door ends the
episode). The colour (the cue) is observed during phase 1 only, so in phase 3 an agent that sees the current
observation alone can pick the right door only by chance (half the time), while one that remembers phase 1 can
always pick it.

Why a cue the environment draws and not two keys the agent chooses between: with a choice, a memoryless policy
could always take the first colour's key and always walk to the first colour's door, and succeed without memory.
"""
from __future__ import annotations

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from .key_to_door import _AGENT, _FLOOR, _GRID, _PHASE_OFF, _PHASE_ON, ABSENT, MOVES, KeyToDoorEnv

OBS_NAMES = ["agent_row", "agent_col", "phase_1", "phase_2", "phase_3", "key_row", "key_col", "cue_a", "cue_b",
             "door_a_row", "door_a_col", "door_b_row", "door_b_col"]
COLOURS = ("a", "b")
_KEY_RGB = [(235, 185, 20), (150, 60, 200)]      # cue a: gold, cue b: purple (the key, and the door that pays)
_DOOR_RGB = [(170, 120, 10), (95, 30, 140)]


class KeyToDoorCueEnv(KeyToDoorEnv):
    """Phases and timing as KeyToDoorEnv; info adds `cue` (0 or 1) and `door` (the door reached: 0 or 1; -1 before
    any, never None: gymnasium's vector envs stack each info key into one array)."""

    def __init__(self, render_mode: str | None = None, size: int = 5, key_steps: int = 7,
                 distractor_steps: int = 8, door_steps: int = 10, cell_px: int = 16):
        super().__init__(render_mode, size, key_steps, distractor_steps, door_steps, cell_px)
        edge = size - 1
        low = np.array([0, 0, 0, 0, 0, ABSENT, ABSENT, 0, 0] + [ABSENT] * 4, dtype=np.float32)
        high = np.array([edge, edge, 1, 1, 1, edge, edge, 1, 1] + [edge] * 4, dtype=np.float32)
        self.observation_space = spaces.Box(low, high, dtype=np.float32)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        gym.Env.reset(self, seed=seed)
        key_i = self.np_random.integers(len(self._other_cells))
        door_a, door_b = self.np_random.choice(len(self._other_cells), size=2, replace=False)
        self.cue = int(self.np_random.integers(2))
        self.key = self._other_cells[key_i].copy()
        self.doors = self._other_cells[[door_a, door_b]].copy()
        self.agent = self.centre.copy()
        self.phase, self.phase_t, self.has_key, self.door_reached = 0, 0, False, -1
        return self._obs(), self._info()

    def step(self, action):
        if self.phase is None:
            raise RuntimeError("Call reset() before step().")
        self.agent = np.clip(self.agent + MOVES[int(action)], 0, self.size - 1)
        self.phase_t += 1
        reward, terminated, truncated = 0.0, False, False
        if self.phase == 0 and not self.has_key and (self.agent == self.key).all():
            self.has_key = True
        at_door = np.flatnonzero((self.doors == self.agent).all(axis=1)) if self.phase == 2 else []
        if len(at_door):
            self.door_reached = int(at_door[0])
            reward, terminated = float(self.has_key and self.door_reached == self.cue), True
        elif self.phase_t == self.phase_steps[self.phase]:
            if self.phase == 2:
                truncated = True
            else:
                self.phase, self.phase_t, self.agent = self.phase + 1, 0, self.centre.copy()
        return self._obs(), reward, terminated, truncated, self._info()

    def _obs(self) -> np.ndarray:
        obs = np.full(len(OBS_NAMES), ABSENT, dtype=np.float32)
        obs[0:2] = self.agent
        obs[2:5] = np.eye(3)[self.phase]
        if self.phase == 0 and not self.has_key:
            obs[5:7] = self.key
        obs[7:9] = np.eye(2)[self.cue] if self.phase == 0 else 0.0   # the cue: phase 1 only
        if self.phase == 2:
            obs[9:13] = self.doors.reshape(-1)
        return obs

    def _info(self) -> dict:
        # cue and has_key after phase 1 are for analysis only: the observation no longer shows them
        return {"phase": self.phase + 1, "has_key": self.has_key, "cue": self.cue, "door": self.door_reached}

    def render(self):
        if self.render_mode is None:
            gym.logger.warn('KeyToDoorCue.render() called without a render_mode; use render_mode="rgb_array".')
            return None
        if self.phase is None:
            raise RuntimeError("Call reset() before render().")
        px, n = self.cell_px, self.size
        img = np.empty((px * (n + 1), px * n, 3), dtype=np.uint8)
        img[:px] = 255
        seg = px * n // 3
        for p in range(3):
            img[2:px - 2, p * seg + 2:(p + 1) * seg - 2] = _PHASE_ON if p == self.phase else _PHASE_OFF
        if self.phase == 0:   # the cue, as the agent sees it: a swatch of the key's colour in the header's corner
            img[2:px - 2, n * px - (px - 4) - 2:n * px - 2] = _KEY_RGB[self.cue]
        room = img[px:]
        room[:] = _FLOOR[self.phase]
        room[::px], room[:, ::px] = _GRID, _GRID

        def fill(rc, colour, inset):
            r, c = int(rc[0]) * px, int(rc[1]) * px
            room[r + inset:r + px - inset, c + inset:c + px - inset] = colour

        if self.phase == 0 and not self.has_key:
            fill(self.key, _KEY_RGB[self.cue], px // 3)
        if self.phase == 2:
            for i, door in enumerate(self.doors):
                fill(door, _DOOR_RGB[i], 1)
        fill(self.agent, _AGENT, px // 6)
        if self.has_key:   # shown to a human viewer only: a dot of the key's colour on the agent
            fill(self.agent, _KEY_RGB[self.cue], px * 3 // 8)
        return img
