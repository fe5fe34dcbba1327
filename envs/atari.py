"""Atari as the Decision Transformer paper evaluated it (kzl/decision-transformer, `atari/mingpt/trainer_atari.py`,
class `Env`), on gymnasium + ale-py.

What that `Env` does, and where this module follows it:
- ALE with sticky actions off (`repeat_action_probability` 0), no ALE frame skip, the minimal action set, at most
  108,000 frames an episode (`max_episode_length = 108e3`);
- a frame is `cv2.resize(ale.getScreenGrayscale(), (84, 84), interpolation=cv2.INTER_LINEAR)` of the whole
  210x160 screen (no crop), kept here as uint8 (the paper divides by 255 outside the model: the env's
  `_get_state` and the training dataset's `states / 255.`);
- reset: 0..29 no-ops (`random.randrange(30)`, drawn here from the env's seeded `np_random`), resetting the game
  if one ends it; the observation is the current frame alone (no max-pool);
- step: the action repeated 4 times, rewards summed unclipped, the observation the element-wise max of the
  *resized* frames after the 3rd and 4th repeats; a game over in between stops the repeats (frames not reached
  stay zero, as its zero-filled `frame_buffer`);
- a stack of the last 4 frames, zero frames before the first (`_reset_buffer`): gymnasium's
  `FrameStackObservation(padding_type="zero")` is exactly that;
- evaluation runs in `env.eval()` mode: a lost life is not an episode end (only training mode used it).

gymnasium's `AtariPreprocessing` does not match and is not used for the frames: it max-pools the raw 210x160
frames *before* resizing, resizes with `INTER_AREA`, and draws 1..noop_max no-ops (tests/test_atari_env.py shows
its frames differ). `render()` is the full colour frame (210x160x3) of the current screen.
"""
from __future__ import annotations

import re

import cv2
import gymnasium as gym
import numpy as np
from gymnasium.wrappers import FrameStackObservation

from . import ATARI_GAMES as DT_GAMES   # the DT paper's four games, registered as seqlens ids

FRAME = 84          # side of a preprocessed frame
STACK = 4           # frames per observation (args.history_length)
FRAME_SKIP = 4      # repeats of each action
NOOP_MAX = 30       # random.randrange(30): 0..29 no-ops at reset
MAX_FRAMES = 108_000
ATARI_IDS = {f"seqlens/DTAtari-{game}-v0": game for game in DT_GAMES}
OBS_SHAPE = (STACK, FRAME, FRAME)


def preprocess_frame(gray: np.ndarray) -> np.ndarray:
    """One 210x160 grayscale screen -> the paper's 84x84 uint8 frame (bilinear over the whole screen)."""
    return cv2.resize(gray, (FRAME, FRAME), interpolation=cv2.INTER_LINEAR)


def _ale_games() -> dict[str, str]:
    import ale_py

    # ALE prints a banner to stderr for every emulator made: the command line's errors are one sentence there
    ale_py.ALEInterface.setLoggerMode(ale_py.LoggerMode.Error)
    gym.register_envs(ale_py)
    return {m.group(1).lower(): m.group(1) for env_id in gym.registry
            if (m := re.fullmatch(r"ALE/([A-Za-z0-9]+)-v5", env_id))}


def game_of(env_id: str) -> str:
    """The ALE game an id names: 'Breakout', 'breakout', 'ALE/Breakout-v5', 'BreakoutNoFrameskip-v4' or
    'seqlens/DTAtari-Breakout-v0' -> 'Breakout'; ValueError (one sentence) for anything else."""
    text = str(env_id).strip()
    shown = text if len(text) <= 60 else text[:57] + "..."
    m = re.fullmatch(r"(?:ALE/|seqlens/DTAtari-)?([A-Za-z0-9]+?)(?:NoFrameskip|Deterministic)?(?:-v\d+)?", text)
    games = _ale_games()
    if not m or m.group(1).lower() not in games:
        raise ValueError(f"{shown!r} is not an Atari game ale-py knows (expected a name such as 'Breakout' or an id "
                         "such as 'ALE/Breakout-v5').")
    return games[m.group(1).lower()]


class DTAtariFrames(gym.Wrapper):
    """One 84x84 uint8 frame per step, made as the DT paper's evaluation `Env` made it (see the module docstring).

    Wraps an ALE env made with frameskip=1 and obs_type="grayscale". `noops` is the number of no-ops the last
    reset took (for tests and for saying what an episode started from)."""

    def __init__(self, env: gym.Env, noop_max: int = NOOP_MAX, frame_skip: int = FRAME_SKIP):
        super().__init__(env)
        if env.unwrapped.get_action_meanings()[0] != "NOOP":   # the paper assumes raw action 0 is a no-op
            raise ValueError("the game's action 0 is not NOOP, so no-op starts cannot be made as the paper made them.")
        if frame_skip < 2:
            raise ValueError("frame_skip must be at least 2: the observation is the max over the last two frames.")
        self.noop_max, self.frame_skip, self.noops = int(noop_max), int(frame_skip), 0
        self.observation_space = gym.spaces.Box(0, 255, (FRAME, FRAME), np.uint8)

    def reset(self, *, seed=None, options=None):
        gray, info = self.env.reset(seed=seed, options=options)
        self.noops = int(self.env.unwrapped.np_random.integers(0, self.noop_max)) if self.noop_max > 0 else 0
        for _ in range(self.noops):
            gray, _, terminated, truncated, info = self.env.step(0)
            if terminated or truncated:
                gray, info = self.env.reset()
        return preprocess_frame(gray), info

    def step(self, action):
        pooled = np.zeros((2, FRAME, FRAME), np.uint8)
        total = 0.0
        terminated = truncated = False
        info = {}
        for t in range(self.frame_skip):
            gray, reward, terminated, truncated, info = self.env.step(action)
            total += float(reward)
            if t >= self.frame_skip - 2:
                pooled[t - (self.frame_skip - 2)] = preprocess_frame(gray)
            if terminated or truncated:
                break
        return pooled.max(0), total, terminated, truncated, info


def make_atari(env_id: str = "Breakout", render_mode: str | None = "rgb_array", noop_max: int = NOOP_MAX,
               max_frames: int = MAX_FRAMES) -> gym.Env:
    """The game `env_id` names (see game_of) with the DT paper's preprocessing: observations uint8 (4, 84, 84),
    the last frame the current one; actions the minimal action set; `render()` the 210x160 colour screen."""
    game = game_of(env_id)
    base = gym.make(f"ALE/{game}-v5", obs_type="grayscale", frameskip=1, repeat_action_probability=0.0,
                    full_action_space=False, max_num_frames_per_episode=int(max_frames), render_mode=render_mode)
    return FrameStackObservation(DTAtariFrames(base, noop_max=noop_max), STACK, padding_type="zero")


def registered(game: str, render_mode: str | None = "rgb_array", **kwargs) -> gym.Env:
    """Entry point of the `seqlens/DTAtari-<Game>-v0` ids (envs/__init__.py registers them by name, lazily)."""
    return make_atari(game, render_mode=render_mode, **kwargs)
