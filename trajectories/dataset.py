"""The Dataset type: flat per-step arrays plus episode boundaries.

Every reader produces one of these; every analysis consumes one. Arrays are stored once, episodes
are slices (views, no copies), and returns-to-go are computed once on first use.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from .errors import DatasetError


@dataclass(frozen=True)
class Episode:
    """Views into the parent Dataset's arrays for one episode (no copies)."""

    index: int
    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    returns_to_go: np.ndarray

    def __len__(self) -> int:
        return len(self.rewards)

    @property
    def total_return(self) -> float:
        return float(self.returns_to_go[0])


@dataclass(eq=False)
class Dataset:
    """Trajectories as flat arrays.

    observations [N, obs_dim] float32; actions [N] int64 (discrete) or [N, act_dim] float32;
    rewards [N] float32; terminated / truncated [N] bool; episode_starts [E] int64, the index of
    each episode's first step (starts at 0, strictly increasing, so no episode is empty).
    """

    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    episode_starts: np.ndarray
    obs_names: list[str] | None = None
    act_names: list[str] | None = None
    n_actions: int | None = None  # discrete only; inferred as max(action) + 1 when not given
    env_id: str | None = None
    source: str = "<memory>"
    metadata: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        name = self.source
        obs = np.asarray(self.observations)
        if obs.ndim == 1:
            obs = obs.reshape(-1, 1)
        if obs.ndim != 2:
            raise DatasetError(f"{name}: observations must be a 2-D array [steps, obs_dim], got shape {obs.shape}.")
        n = obs.shape[0]
        if n == 0:
            raise DatasetError(f"{name}: the dataset has no steps.")
        acts = np.asarray(self.actions)
        fields = {"actions": acts, "rewards": self.rewards, "terminated": self.terminated, "truncated": self.truncated}
        for key, arr in fields.items():
            if len(arr) != n:
                raise DatasetError(f"{name}: {key} has {len(arr)} rows but observations has {n}; every per-step array must have one row per step.")
        if not np.issubdtype(obs.dtype, np.number):
            raise DatasetError(f"{name}: observations must be numeric, got dtype {obs.dtype}.")
        self.observations = obs if obs.dtype == np.float32 else obs.astype(np.float32)
        self.actions = _normalise_actions(acts, name)
        self.rewards = _as_dtype(self.rewards, np.float32, "rewards", name)
        self.terminated = _as_flags(self.terminated, "terminated", name)
        self.truncated = _as_flags(self.truncated, "truncated", name)
        _check_finite(self.observations, "observations", name)
        if not self.discrete:
            _check_finite(self.actions, "actions", name)
        _check_finite(self.rewards, "rewards", name)

        starts = np.asarray(self.episode_starts, dtype=np.int64).reshape(-1)
        if len(starts) == 0 or starts[0] != 0:
            raise DatasetError(f"{name}: episode_starts must begin with 0 (the first episode starts at step 0).")
        gaps = np.diff(np.append(starts, n))
        if (gaps <= 0).any():
            bad = int(np.argmax(gaps <= 0))
            raise DatasetError(f"{name}: episode {bad} has zero length (episode_starts must be strictly increasing and below {n}).")
        self.episode_starts = starts

        if self.discrete:
            if (self.actions < 0).any():
                row = int(np.argmax(self.actions < 0))
                raise DatasetError(f"{name}: discrete action is negative ({self.actions[row]}) at row {row}.")
            inferred = int(self.actions.max()) + 1
            if self.n_actions is None:
                self.n_actions = inferred
            elif inferred > self.n_actions:
                raise DatasetError(f"{name}: action {inferred - 1} is out of range for {self.n_actions} discrete actions.")
        else:
            self.n_actions = None
        if self.obs_names is not None and len(self.obs_names) != self.obs_dim:
            raise DatasetError(f"{name}: {len(self.obs_names)} observation names given for obs_dim {self.obs_dim}.")
        self.obs_names = list(self.obs_names) if self.obs_names is not None else [f"obs_{i}" for i in range(self.obs_dim)]
        if self.act_names is not None and len(self.act_names) != self.act_dim:
            raise DatasetError(f"{name}: {len(self.act_names)} action names given for act_dim {self.act_dim}.")
        if self.act_names is None:
            self.act_names = ["action"] if self.discrete else [f"action_{i}" for i in range(self.act_dim)]
        self.act_names = list(self.act_names)

    # ---- shape facts -------------------------------------------------------------------------
    @property
    def discrete(self) -> bool:
        return self.actions.ndim == 1

    @property
    def obs_dim(self) -> int:
        return self.observations.shape[1]

    @property
    def act_dim(self) -> int:
        return 1 if self.discrete else self.actions.shape[1]

    @property
    def n_transitions(self) -> int:
        return self.observations.shape[0]

    @property
    def n_episodes(self) -> int:
        return len(self.episode_starts)

    @cached_property
    def episode_ends(self) -> np.ndarray:
        """One past the last step of each episode."""
        return np.append(self.episode_starts[1:], self.n_transitions)

    @cached_property
    def episode_lengths(self) -> np.ndarray:
        return self.episode_ends - self.episode_starts

    @cached_property
    def episode_index(self) -> np.ndarray:
        """Episode number of every step [N]."""
        return np.repeat(np.arange(self.n_episodes), self.episode_lengths)

    @cached_property
    def timesteps(self) -> np.ndarray:
        """Step within its episode, for every step [N]."""
        return np.arange(self.n_transitions) - np.repeat(self.episode_starts, self.episode_lengths)

    # ---- returns ------------------------------------------------------------------------------
    @cached_property
    def returns_to_go(self) -> np.ndarray:
        """R_t = sum_{t' >= t} r_t' within the episode, computed once (float64 sums, float32 out)."""
        suffix = np.cumsum(self.rewards[::-1], dtype=np.float64)[::-1]  # sum from t to the dataset end
        after_episode = np.append(suffix, 0.0)[self.episode_ends]  # sum past each episode's last step
        return (suffix - np.repeat(after_episode, self.episode_lengths)).astype(np.float32)

    @cached_property
    def episode_returns(self) -> np.ndarray:
        return np.add.reduceat(self.rewards.astype(np.float64), self.episode_starts)

    # ---- views --------------------------------------------------------------------------------
    def episode(self, i: int) -> Episode:
        if not -self.n_episodes <= i < self.n_episodes:
            raise IndexError(f"episode {i} out of range for {self.n_episodes} episodes")
        i %= self.n_episodes
        s = slice(int(self.episode_starts[i]), int(self.episode_ends[i]))
        return Episode(i, self.observations[s], self.actions[s], self.rewards[s], self.terminated[s],
                       self.truncated[s], self.returns_to_go[s])

    def __len__(self) -> int:
        return self.n_episodes

    def __iter__(self):
        return (self.episode(i) for i in range(self.n_episodes))

    def select(self, episodes) -> "Dataset":
        """A new Dataset of the given episodes (this one copies: the selection is not contiguous)."""
        idx = np.asarray(episodes, dtype=np.int64)
        steps = np.concatenate([np.arange(self.episode_starts[i], self.episode_ends[i]) for i in idx])
        lengths = self.episode_lengths[idx]
        return Dataset(self.observations[steps], self.actions[steps], self.rewards[steps],
                       self.terminated[steps], self.truncated[steps],
                       np.concatenate([[0], np.cumsum(lengths)[:-1]]), self.obs_names, self.act_names,
                       self.n_actions, self.env_id, self.source, dict(self.metadata))

    # ---- summaries ----------------------------------------------------------------------------
    def summary(self) -> dict:
        """The facts `cli.py inspect --json` prints (format is added by the caller)."""
        ret = self.episode_returns
        return {
            "n_episodes": self.n_episodes,
            "n_transitions": self.n_transitions,
            "obs_dim": self.obs_dim,
            "act_dim": self.act_dim,
            "n_actions": self.n_actions,
            "discrete": self.discrete,
            "env_id": self.env_id,
            "return_mean": float(ret.mean()),
            "return_min": float(ret.min()),
            "return_max": float(ret.max()),
            "length_mean": float(self.episode_lengths.mean()),
        }

    def fingerprint(self) -> str:
        """A short content hash (sha256 over the arrays), stored with agents trained on this data."""
        h = hashlib.sha256()
        for arr in (self.observations, self.actions, self.rewards, self.terminated, self.truncated, self.episode_starts):
            h.update(str(arr.dtype).encode() + str(arr.shape).encode())
            h.update(np.ascontiguousarray(arr).data)
        return h.hexdigest()[:16]

    def equals(self, other: "Dataset") -> bool:
        """Exact equality of arrays, names and discrete-action count."""
        same = all(np.array_equal(getattr(self, k), getattr(other, k)) and getattr(self, k).dtype == getattr(other, k).dtype
                   for k in ("observations", "actions", "rewards", "terminated", "truncated", "episode_starts"))
        return same and self.obs_names == other.obs_names and self.act_names == other.act_names and \
            self.n_actions == other.n_actions and self.env_id == other.env_id


def starts_from_flags(terminated: np.ndarray, truncated: np.ndarray) -> np.ndarray:
    """Episode starts when only done flags are known: a new episode follows every terminal/timeout step."""
    done = np.asarray(terminated, bool) | np.asarray(truncated, bool)
    ends = np.flatnonzero(done[:-1]) + 1
    return np.concatenate([[0], ends]).astype(np.int64)


def starts_from_ids(episode_ids: np.ndarray) -> np.ndarray:
    """Episode starts from a per-step episode id column (rows already grouped by episode)."""
    ids = np.asarray(episode_ids)
    change = np.flatnonzero(ids[1:] != ids[:-1]) + 1
    return np.concatenate([[0], change]).astype(np.int64)


def _normalise_actions(acts: np.ndarray, name: str) -> np.ndarray:
    if acts.ndim == 2 and acts.shape[1] == 1 and np.issubdtype(acts.dtype, np.integer):
        acts = acts[:, 0]
    if acts.ndim == 1 and np.issubdtype(acts.dtype, np.integer):
        return acts if acts.dtype == np.int64 else acts.astype(np.int64)
    if acts.ndim == 1 and acts.dtype == np.bool_:
        return acts.astype(np.int64)
    if not np.issubdtype(acts.dtype, np.number):
        raise DatasetError(f"{name}: actions must be numeric, got dtype {acts.dtype}.")
    if acts.ndim == 1:
        acts = acts.reshape(-1, 1)
    if acts.ndim != 2:
        raise DatasetError(f"{name}: actions must be [steps] integers or [steps, act_dim] floats, got shape {acts.shape}.")
    return acts if acts.dtype == np.float32 else acts.astype(np.float32)


def _as_dtype(arr, dtype, key: str, name: str) -> np.ndarray:
    arr = np.asarray(arr)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise DatasetError(f"{name}: {key} must be one value per step, got shape {arr.shape}.")
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
        raise DatasetError(f"{name}: {key} must be numeric, got dtype {arr.dtype}.")
    return arr if arr.dtype == dtype else arr.astype(dtype)


def _as_flags(arr, key: str, name: str) -> np.ndarray:
    arr = _as_dtype(arr, np.asarray(arr).dtype, key, name)
    if arr.dtype != np.bool_:
        if np.issubdtype(arr.dtype, np.floating) and not np.isfinite(arr).all():
            raise DatasetError(f"{name}: {key} has NaN or inf at row {int(np.argmax(~np.isfinite(arr)))}.")
        if not np.isin(arr, (0, 1)).all():
            row = int(np.argmax(~np.isin(arr, (0, 1))))
            raise DatasetError(f"{name}: {key} must be 0/1 or true/false, got {arr[row]} at row {row}.")
        arr = arr.astype(np.bool_)
    return arr


def _check_finite(arr: np.ndarray, key: str, name: str) -> None:
    ok = np.isfinite(arr)
    if not ok.all():
        flat = int(np.argmax(~ok.reshape(len(arr), -1).all(axis=1)))
        what = "NaN" if np.isnan(arr[flat]).any() else "inf"
        raise DatasetError(f"{name}: {key} has {what} at row {flat}.")
