"""Named steps of logged episodes that attribution maps mark (Key-to-Door: the key pickup, the first steps of
phase 2 and phase 3), read from the observations alone, so any attribution result can carry them."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class KeyDoorSteps:
    """Landmarks of one Key-to-Door episode (episode steps)."""

    key_step: int | None      # the step whose action walks onto the key (s_{key_step+1} is the first without it)
    phase3_step: int | None   # the first step in the door room
    has_key: bool
    phase2_step: int | None = None   # the first step in the distractor room (phase 1 ends the step before)


def is_key_to_door(dataset) -> bool:
    from envs.key_to_door import OBS_NAMES

    return "KeyToDoor" in str(getattr(dataset, "env_id", "") or "") or list(getattr(dataset, "obs_names", []) or []) == OBS_NAMES


def key_door_steps(observations: np.ndarray, actions: np.ndarray) -> KeyDoorSteps:
    """Find the key pickup and the first phase-3 step in one Key-to-Door episode (raw observations [T, 9]:
    agent row/col, phase one-hot, key row/col (-1 once taken or outside phase 1), door row/col)."""
    from envs.key_to_door import MOVES, OBS_NAMES

    obs = np.asarray(observations, float)
    acts = np.asarray(actions).reshape(-1).astype(np.int64)
    if obs.ndim != 2 or obs.shape[1] != len(OBS_NAMES):
        raise ValueError(f"Key-to-Door observations have {len(OBS_NAMES)} features ({', '.join(OBS_NAMES)}), "
                         f"got shape {obs.shape}.")
    phase1, phase2, phase3 = obs[:, 2] > 0.5, obs[:, 3] > 0.5, obs[:, 4] > 0.5
    key_visible = obs[:, 5] >= 0
    after = obs[:, 0:2] + MOVES[np.clip(acts, 0, len(MOVES) - 1)]
    picks = np.flatnonzero(phase1 & key_visible & (after == obs[:, 5:7]).all(1))
    key_step = int(picks[0]) if len(picks) else None
    p2, p3 = np.flatnonzero(phase2), np.flatnonzero(phase3)
    return KeyDoorSteps(key_step, int(p3[0]) if len(p3) else None, key_step is not None, int(p2[0]) if len(p2) else None)


def episode_markers(dataset, start: int, end: int) -> dict[str, int]:
    """Named episode steps of the episode at dataset steps start..end-1 ({} where the data has none)."""
    if not is_key_to_door(dataset):
        return {}
    kd = key_door_steps(dataset.observations[start:end], np.asarray(dataset.actions)[start:end])
    return {k: v for k, v in (("key picked up", kd.key_step), ("phase 3", kd.phase3_step)) if v is not None}
