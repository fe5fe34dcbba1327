"""Key-to-Door: the credit-assignment gridworld of the Decision Transformer paper (Chen et al. 2021,
after Hung et al. 2019 and Mesnard et al. 2021).

Three rooms visited in turn, each phase lasting a fixed number of steps:
  1. key room: walking onto the key picks it up;
  2. distractor room: nothing to do, no reward;
  3. door room: reaching the door ends the episode with reward 1 if the key is held, else 0;
     running out of steps truncates it.
Whether the key is held is never observed after phase 1, so only memory of phase 1 can tell
whether going to the door will pay: the credit for the final reward belongs to a step ~15 back.
"""
from __future__ import annotations

import gymnasium as gym
import numpy as np
from gymnasium import spaces

OBS_NAMES = ["agent_row", "agent_col", "phase_1", "phase_2", "phase_3", "key_row", "key_col", "door_row", "door_col"]
ACTION_LABELS = ["up", "down", "left", "right"]
MOVES = np.array([(-1, 0), (1, 0), (0, -1), (0, 1)])
ABSENT = -1.0  # key/door coordinates when not visible

# RGB colours for rgb_array rendering
_FLOOR = [(250, 243, 214), (228, 228, 228), (222, 240, 222)]  # per phase, so the room is recognisable
_GRID, _AGENT, _KEY, _DOOR = (190, 190, 190), (40, 90, 220), (235, 185, 20), (130, 70, 25)
_PHASE_ON, _PHASE_OFF = (60, 60, 60), (210, 210, 210)


class KeyToDoorEnv(gym.Env):
    metadata = {"render_modes": ["rgb_array"], "render_fps": 4}

    def __init__(self, render_mode: str | None = None, size: int = 5, key_steps: int = 7,
                 distractor_steps: int = 8, door_steps: int = 10, cell_px: int = 16):
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"KeyToDoor supports render_mode None or 'rgb_array', got {render_mode!r}.")
        self.render_mode = render_mode
        self.size = size
        self.phase_steps = (key_steps, distractor_steps, door_steps)
        self.cell_px = cell_px
        self.centre = np.array([size // 2, size // 2])
        edge = size - 1
        low = np.array([0, 0, 0, 0, 0, ABSENT, ABSENT, ABSENT, ABSENT], dtype=np.float32)
        high = np.array([edge, edge, 1, 1, 1, edge, edge, edge, edge], dtype=np.float32)
        self.observation_space = spaces.Box(low, high, dtype=np.float32)
        self.action_space = spaces.Discrete(4)
        # the agent starts every room in the centre; key and door go anywhere else, all reachable in time
        cells = [(r, c) for r in range(size) for c in range(size)]
        self._other_cells = np.array([rc for rc in cells if rc != tuple(self.centre)])
        self.phase = None

    # ---- gymnasium API -------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        key_i, door_i = self.np_random.integers(len(self._other_cells), size=2)
        self.key, self.door = self._other_cells[key_i].copy(), self._other_cells[door_i].copy()
        self.agent = self.centre.copy()
        self.phase, self.phase_t, self.has_key = 0, 0, False
        return self._obs(), self._info()

    def step(self, action):
        if self.phase is None:
            raise RuntimeError("Call reset() before step().")
        self.agent = np.clip(self.agent + MOVES[int(action)], 0, self.size - 1)
        self.phase_t += 1
        reward, terminated, truncated = 0.0, False, False
        if self.phase == 0 and not self.has_key and (self.agent == self.key).all():
            self.has_key = True
        if self.phase == 2 and (self.agent == self.door).all():
            reward, terminated = float(self.has_key), True
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
        if self.phase == 2:
            obs[7:9] = self.door
        return obs

    def _info(self) -> dict:
        # has_key is for analysis only (e.g. colouring episodes); it is not part of the observation
        return {"phase": self.phase + 1, "has_key": self.has_key}

    # ---- rendering ---------------------------------------------------------------------------
    def render(self):
        if self.render_mode is None:
            gym.logger.warn('KeyToDoor.render() called without a render_mode; use render_mode="rgb_array".')
            return None
        if self.phase is None:
            raise RuntimeError("Call reset() before render().")
        px, n = self.cell_px, self.size
        img = np.empty((px * (n + 1), px * n, 3), dtype=np.uint8)
        # header strip: one segment per phase, the current one dark
        img[:px] = 255
        seg = px * n // 3
        for p in range(3):
            img[2:px - 2, p * seg + 2:(p + 1) * seg - 2] = _PHASE_ON if p == self.phase else _PHASE_OFF
        room = img[px:]
        room[:] = _FLOOR[self.phase]
        room[::px], room[:, ::px] = _GRID, _GRID

        def fill(rc, colour, inset):
            r, c = int(rc[0]) * px, int(rc[1]) * px
            room[r + inset:r + px - inset, c + inset:c + px - inset] = colour

        if self.phase == 0 and not self.has_key:
            fill(self.key, _KEY, px // 3)
        if self.phase == 2:
            fill(self.door, _DOOR, 1)
        fill(self.agent, _AGENT, px // 6)
        if self.has_key:  # shown to a human viewer only: a gold dot on the agent
            fill(self.agent, _KEY, px * 3 // 8)
        return img
