"""The Dataset type: per-step arrays plus episode boundaries.

Every reader produces one of these; every analysis consumes one. Arrays are stored once, episodes
are slices (views, no copies), and returns-to-go are computed once on first use. Observations are vectors
[N, obs_dim] float32, or shaped (images / grids [N, H, W, C], frame stacks [N, S, H, W]) uint8 or float32, kept in
their dtype and never copied whole (a reader may hand over a read-only np.memmap of the file).
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from .budget import check_rows, check_width, over_limit
from .digest import fast_digest, is_mapped
from .errors import DatasetError
from .limits import limits

F32_MAX = float(np.finfo(np.float32).max)
SHAPED_DTYPES = (np.dtype(np.uint8), np.dtype(np.float32))   # shaped observations are kept in these, never cast
CHECK_ROWS = 1 << 14   # rows of a float image array scanned for NaN/inf at a time (bounded temporaries)


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
    extras: dict = field(default_factory=dict)   # the episode's slices of Dataset.obs_extras (direction, mission codes)

    def __len__(self) -> int:
        return len(self.rewards)

    @property
    def total_return(self) -> float:
        return float(self.returns_to_go[0])


@dataclass(eq=False)
class Dataset:
    """Trajectories as flat arrays.

    observations [N, *obs_shape]: vectors [N, obs_dim] float32, or shaped observations (images / grids
    [N, H, W] or [N, H, W, C], frame stacks [N, S, H, W]) uint8 or float32, kept as given (a mapped file stays
    mapped); `flat_observations` is the [N, obs_dim] view vector consumers read. actions [N] int64 (discrete) or [N, act_dim] float32;
    rewards [N] float32; terminated / truncated [N] bool; episode_starts [E] int64, the index of
    each episode's first step (starts at 0, strictly increasing, so no episode is empty).
    infos: extra per-step arrays, one row per step (D4RL's `infos/qpos`, `infos/qvel`: the MuJoCo state
    frames are drawn from); kept by `select`, part of `content_key` but not of `fingerprint`.
    obs_extras: the other parts of a dict observation, one row per step: {"direction": int64[N], "mission": int32[N]
    codes into `missions`} (MiniGrid's dict as Minari stores it; `observations` is then its image).
    missions: the distinct mission strings (at most limits().missions, each at most limits().mission_chars characters).
    Every field is part of the cache key (`analysis.core.identity.dataset_key`); only the arrays are in `fingerprint`.
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
    infos: dict = field(default_factory=dict)
    obs_extras: dict = field(default_factory=dict)
    missions: list[str] | None = None

    def __post_init__(self) -> None:
        name = self.source
        obs = self.observations if isinstance(self.observations, np.ndarray) or is_mapped(self.observations) \
            else np.asarray(self.observations)   # a lazily read HDF5 array (trajectories/lazy_h5.py) stays lazy
        if obs.ndim == 1:
            obs = obs.reshape(-1, 1)
        if obs.ndim not in (2, 3, 4):
            raise DatasetError(f"{name}: observations must be a 2-D array [steps, obs_dim] of vectors, or images "
                               f"[steps, H, W(, C)] or frame stacks [steps, S, H, W], got shape {obs.shape}.")
        n = obs.shape[0]
        if n == 0:
            raise DatasetError(f"{name}: the dataset has no steps.")
        acts = np.asarray(self.actions)
        fields = {"actions": acts, "rewards": self.rewards, "terminated": self.terminated, "truncated": self.truncated}
        for key, arr in fields.items():
            if len(arr) != n:
                raise DatasetError(f"{name}: {key} has {len(arr)} rows but observations has {n}; every per-step array must have one row per step.")
        if not np.issubdtype(obs.dtype, np.number) or np.iscomplexobj(obs):
            raise DatasetError(f"{name}: observations must be real numbers, got dtype {obs.dtype}.")
        check_rows(name, n)
        if obs.ndim == 2:
            check_width(name, obs.shape[1], "observation")
            self.observations = _to_float32(obs, "observations", name)
            _check_finite(self.observations, "observations", name)
        else:
            self.observations = _shaped(obs, name)
        self.actions = _normalise_actions(acts, name)
        self.rewards = _as_dtype(self.rewards, np.float32, "rewards", name)
        self.terminated = _as_flags(self.terminated, "terminated", name)
        self.truncated = _as_flags(self.truncated, "truncated", name)
        if not self.discrete:
            _check_finite(self.actions, "actions", name)
        _check_finite(self.rewards, "rewards", name)

        starts = whole_numbers(self.episode_starts, "episode_starts", name)
        if len(starts) == 0 or starts[0] != 0:
            raise DatasetError(f"{name}: episode_starts must begin with 0 (the first episode starts at step 0).")
        gaps = np.diff(np.append(starts, n))
        if (gaps <= 0).any():
            bad = int(np.argmax(gaps <= 0))
            raise DatasetError(f"{name}: episode {bad} has zero length (episode_starts must be strictly increasing and below {n}).")
        self.episode_starts = starts

        if self.discrete:
            self.n_actions = _discrete_count(self.actions, self.n_actions, name)
        else:
            check_width(name, self.act_dim, "action")
            if self.n_actions is not None:
                check_n_actions(self.n_actions, name)
            self.n_actions = None
        self.obs_names = _names(self.obs_names, "obs_names", name)
        self.act_names = _names(self.act_names, "act_names", name)
        if self.env_id is not None and not isinstance(self.env_id, str):
            raise DatasetError(f"{name}: env_id must be a string, got {type(self.env_id).__name__}.")
        if not isinstance(self.metadata, dict):
            raise DatasetError(f"{name}: metadata must be a JSON object (a dict), got {type(self.metadata).__name__}.")
        self.infos = _infos(self.infos, n, name)
        self.missions = _missions(self.missions, name)
        self.obs_extras = _extras(self.obs_extras, n, self.missions, name)
        if self.shaped:   # a name per pixel says nothing: shaped observations carry none ([] always)
            if self.obs_names:
                raise DatasetError(f"{name}: observation names are for vector observations; these are {self.obs_shape_text} "
                                   f"{self.obs_kind}.")
            self.obs_names = []
        if self.obs_names is not None and not self.shaped and len(self.obs_names) != self.obs_dim:
            raise DatasetError(f"{name}: {len(self.obs_names)} observation names given for obs_dim {self.obs_dim}.")
        if not self.shaped:
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
    def obs_shape(self) -> tuple:
        """One observation's shape: (obs_dim,) for vectors, (H, W[, C]) or (S, H, W) for shaped observations."""
        return tuple(int(x) for x in self.observations.shape[1:])

    @property
    def obs_dim(self) -> int:
        return math.prod(self.obs_shape)

    @property
    def shaped(self) -> bool:
        """True for images, grids and frame stacks (observations with more than one axis per step)."""
        return self.observations.ndim > 2

    @property
    def flat_observations(self) -> np.ndarray:
        """[N, obs_dim]: the observations themselves for vectors, a reshaped view (no copy) of shaped ones."""
        return self.observations.reshape(self.n_transitions, self.obs_dim)

    @property
    def obs_shape_text(self) -> str:
        """'84×84×1', '4×84×84', '11': the observation's shape as pages write it."""
        return "×".join(str(x) for x in self.obs_shape)

    @property
    def obs_kind(self) -> str:
        if not self.shaped:
            return "vectors"
        # frames stacked first (the DT paper's 4×84×84); not a grid's channels last (DTI's 7×7×20 one-hot view)
        if self.observations.ndim == 4 and self.obs_shape[0] <= 4 < self.obs_shape[-1]:
            return "frame stacks"
        # a grid is a few cells a side (MiniGrid's 7×7 view, a full 25×25 map); a picture has many pixels
        return "grids" if self.observations.dtype == np.uint8 and max(self.obs_shape[:2]) <= 32 else "images"

    def require_vectors(self, what: str) -> None:
        """One sentence for a consumer that reads observations per dimension: '… needs vector observations; this
        dataset's observations are 84×84×1 images.'"""
        if self.shaped:
            raise DatasetError(f"{what} needs vector observations; this dataset's observations are "
                               f"{self.obs_shape_text} {self.obs_kind}.")

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
                       self.truncated[s], self.returns_to_go[s], {k: v[s] for k, v in self.obs_extras.items()})

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
                       self.n_actions, self.env_id, self.source, dict(self.metadata),
                       {k: v[steps] for k, v in self.infos.items()}, {k: v[steps] for k, v in self.obs_extras.items()},
                       None if self.missions is None else list(self.missions))

    # ---- summaries ----------------------------------------------------------------------------
    def summary(self) -> dict:
        """The facts `cli.py inspect --json` prints (format is added by the caller)."""
        ret = self.episode_returns
        return {
            "n_episodes": self.n_episodes,
            "n_transitions": self.n_transitions,
            "obs_dim": self.obs_dim,
            "obs_shape": list(self.obs_shape),
            "obs_dtype": str(self.observations.dtype),
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
        """A short content hash (sha256 over the arrays), stored with agents trained on this data. Shaped observations
        enter as their xxh3_128 digest (`obs_digest`): sha256 over gigabytes of frames takes tens of seconds."""
        h = hashlib.sha256()
        for arr in (self.observations, self.actions, self.rewards, self.terminated, self.truncated, self.episode_starts):
            h.update(str(arr.dtype).encode() + str(arr.shape).encode())
            if arr is self.observations and self.shaped:
                h.update(b"xxh3_128:" + self.obs_digest.encode())
            else:
                h.update(np.ascontiguousarray(arr).data)
        return h.hexdigest()[:16]

    @property
    def obs_digest(self) -> str:
        """xxh3_128 of the shaped observations, computed once when they cannot change (a read-only array, as every
        mapped file is), else on each call (in-process arrays may be changed in place)."""
        cached = self.__dict__.get("_obs_digest")
        if cached is not None and cached[0] is self.observations:
            return cached[1]
        digest = fast_digest(self.observations)
        if not self.observations.flags.writeable:
            self.__dict__["_obs_digest"] = (self.observations, digest)
        return digest

    @property
    def mapped(self) -> bool:
        """True when the observations are read from the file on use (np.memmap), not held in memory."""
        return is_mapped(self.observations)

    def content_key(self) -> str:
        """The arrays' identity: `fingerprint` (what a model trains on, so agents' stored fingerprints stay valid),
        extended by the infos arrays when there are any (two files differing only in qpos draw other frames). The
        cache identity is `analysis.core.identity.dataset_key`, which adds everything else a page shows (names, metadata,
        environment id, source)."""
        if not self.infos and not self.obs_extras and self.missions is None:
            return self.fingerprint()
        h = hashlib.sha256(self.fingerprint().encode())
        for k in sorted(self.infos):
            arr = self.infos[k]
            h.update(k.encode() + b"\0" + str(arr.dtype).encode() + str(arr.shape).encode())
            h.update(np.ascontiguousarray(arr).data)
        for k in sorted(self.obs_extras):   # after the infos, tagged: no infos layout can equal an extras one
            arr = self.obs_extras[k]
            h.update(b"extra\0" + k.encode() + b"\0" + str(arr.dtype).encode() + str(arr.shape).encode())
            h.update(np.ascontiguousarray(arr).data)
        if self.missions is not None:
            h.update(b"missions\0" + "\0".join(self.missions).encode("utf-8", "surrogatepass") + str(len(self.missions)).encode())
        return h.hexdigest()[:16]

    def equals(self, other: "Dataset") -> bool:
        """Exact equality of arrays, names and discrete-action count."""
        same = all(np.array_equal(getattr(self, k), getattr(other, k)) and getattr(self, k).dtype == getattr(other, k).dtype
                   for k in ("observations", "actions", "rewards", "terminated", "truncated", "episode_starts"))
        same = same and self.infos.keys() == other.infos.keys() and all(
            np.array_equal(v, other.infos[k]) and v.dtype == other.infos[k].dtype for k, v in self.infos.items())
        same = same and self.obs_extras.keys() == other.obs_extras.keys() and all(
            np.array_equal(v, other.obs_extras[k]) and v.dtype == other.obs_extras[k].dtype
            for k, v in self.obs_extras.items()) and self.missions == other.missions
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


def whole_numbers(values, key: str, name: str) -> np.ndarray:
    """A 1-D int64 array from integers, or from floats that are all whole (2.5, NaN or 1e300 are refused, not cast)."""
    arr = np.asarray(values).reshape(-1)
    if arr.dtype == np.bool_ or not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        if len(arr):
            raise DatasetError(f"{name}: {key} must be whole numbers, got dtype {arr.dtype}.")
        return arr.astype(np.int64)
    if arr.dtype.kind == "f":
        with np.errstate(invalid="ignore"):
            bad = ~np.isfinite(arr) | (arr != np.round(arr)) | (np.abs(arr) > 2.0 ** 62)
        if bad.any():
            i = int(np.argmax(bad))
            raise DatasetError(f"{name}: {key} must be whole numbers, got a fraction, NaN, inf or a value beyond ±2^62 at index {i}.")
    if arr.dtype == np.uint64 and len(arr) and arr.max() > np.iinfo(np.int64).max:
        raise DatasetError(f"{name}: {key} has a value beyond int64 at index {int(np.argmax(arr))}.")
    return arr.astype(np.int64)


JSON_TYPES = {dict: "an object", list: "an array", str: "a string", int: "a number", float: "a number", bool: "true/false", type(None): "null"}


def check_meta(meta, name: str, where: str) -> dict:
    """The optional fields seqlens stores beside the arrays (npz seqlens_meta, parquet schema
    metadata), type-checked so a wrong type gets a sentence instead of failing later."""
    def kind(v):
        return JSON_TYPES.get(type(v), type(v).__name__)

    if not isinstance(meta, dict):
        raise DatasetError(f"{name}: {where} must be a JSON object, got {kind(meta)}.")
    for key in ("obs_names", "act_names"):
        value = meta.get(key)
        if value is not None and not (isinstance(value, list) and all(isinstance(x, str) for x in value)):
            shown = (f"an array holding {kind(next(x for x in value if not isinstance(x, str)))}"
                     if isinstance(value, list) else kind(value))
            raise DatasetError(f"{name}: {where} has {key} that is not a list of strings (got {shown}).")
    if not isinstance(meta.get("env_id"), (str, type(None))):
        raise DatasetError(f"{name}: {where} has env_id that is not a string or null (got {kind(meta['env_id'])}).")
    if not isinstance(meta.get("metadata"), (dict, type(None))):
        raise DatasetError(f"{name}: {where} has metadata that is not an object (got {kind(meta['metadata'])}).")
    if meta.get("n_actions") is not None:
        check_n_actions(meta["n_actions"], name, f"n_actions in {where}")
    return meta


def check_n_actions(value, name: str, where: str = "n_actions") -> int:
    """A discrete action count from a caller or a file's metadata: a whole number in 1..limits().actions."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise DatasetError(f"{name}: {where} must be a whole number of discrete actions, got {JSON_TYPES.get(type(value), type(value).__name__)}.")
    if value < 1:
        raise DatasetError(f"{name}: {where} must be at least 1.")
    if value > limits().actions:
        raise over_limit(name, f"{int(value):,} discrete actions", "actions", "discrete actions")
    return int(value)


def _discrete_count(actions: np.ndarray, declared, name: str) -> int:
    """n_actions from the caller or max(action) + 1, bounded before any per-action list is built."""
    if (actions < 0).any():
        row = int(np.argmax(actions < 0))
        raise DatasetError(f"{name}: discrete action is negative at row {row}.")
    row = int(np.argmax(actions))
    top = int(actions[row])
    if top >= limits().actions:
        raise over_limit(name, f"a discrete action at row {row} past the limit", "actions", "discrete actions")
    if declared is None:
        return top + 1
    declared = check_n_actions(declared, name)
    if top >= declared:
        raise DatasetError(f"{name}: the action at row {row} is out of range for {declared} discrete actions.")
    return declared


def _names(names, key: str, name: str) -> list[str] | None:
    if names is None:
        return None
    if isinstance(names, (str, bytes, dict)) or not hasattr(names, "__len__"):
        raise DatasetError(f"{name}: {key} must be a list of strings, got {type(names).__name__}.")
    if len(names) > limits().features:
        raise over_limit(name, f"{len(names):,} {key}", "features", "features per step")
    names = list(names)
    bad = [x for x in names if not isinstance(x, str)][:1]
    if bad:
        bad = bad[0]
        raise DatasetError(f"{name}: {key} must be a list of strings, got {type(bad).__name__}.")
    return names


def _infos(infos, n: int, name: str) -> dict:
    """Extra per-step arrays: real numbers, one row per step (readers check sizes before reading them)."""
    if not isinstance(infos, dict):
        raise DatasetError(f"{name}: infos must be a dict of per-step arrays, got {type(infos).__name__}.")
    out = {}
    for key, arr in infos.items():
        arr = np.asarray(arr)
        if not isinstance(key, str) or arr.ndim == 0 or len(arr) != n:
            rows = len(arr) if arr.ndim else 0
            raise DatasetError(f"{name}: infos {str(key)[:40]!r} has {rows} rows but observations has {n}; "
                               "every per-step array must have one row per step.")
        if not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
            raise DatasetError(f"{name}: infos {key[:40]!r} must be real numbers, got dtype {arr.dtype}.")
        out[key] = arr
    return out


def _shaped(obs: np.ndarray, name: str) -> np.ndarray:
    """Images / grids / frame stacks: sizes within the limits, kept in uint8 or float32 (a mapped or in-file array is
    never cast: that would copy it whole); other real dtypes held in memory are cast (whole numbers in 0..255 to
    uint8, the rest to float32). Float arrays are scanned for NaN/inf a block of rows at a time."""
    steps, shape = obs.shape[0], tuple(obs.shape[1:])
    if min(shape) < 1:
        raise DatasetError(f"{name}: observations have an empty axis (shape {obs.shape}).")
    values = math.prod(shape)
    if values > limits().obs_values:
        raise over_limit(name, f"observations of shape {'×'.join(map(str, shape))} ({values:,} values each)",
                         "obs_values", "values per observation")
    if obs.dtype not in SHAPED_DTYPES:
        if not np.issubdtype(obs.dtype, np.number) and obs.dtype != np.bool_ or np.iscomplexobj(obs):
            raise DatasetError(f"{name}: observations must be real numbers, got dtype {obs.dtype}.")
        if is_mapped(obs):
            raise DatasetError(f"{name}: image observations are read from the file as uint8 or float32; this file "
                               f"stores {obs.dtype}, which would have to be copied whole to convert.")
        if obs.dtype.kind in "biu" and steps and obs.min() >= 0 and obs.max() <= 255:
            obs = obs.astype(np.uint8)
        else:
            obs = _to_float32(obs, "observations", name)
    if obs.dtype.kind == "f":
        for i in range(0, steps, CHECK_ROWS):
            block = obs[i:i + CHECK_ROWS]
            ok = np.isfinite(block).reshape(len(block), -1).all(axis=1)
            if not ok.all():
                row = i + int(np.argmax(~ok))
                what = "NaN" if np.isnan(obs[row]).any() else "inf"
                raise DatasetError(f"{name}: observations has {what} at row {row}.")
    return obs


def _missions(missions, name: str) -> list[str] | None:
    """The distinct mission strings: a list of str, counted and measured against the limits."""
    if missions is None:
        return None
    if isinstance(missions, (str, bytes, dict)) or not hasattr(missions, "__len__"):
        raise DatasetError(f"{name}: missions must be a list of strings, got {type(missions).__name__}.")
    if len(missions) > limits().missions:
        raise over_limit(name, f"{len(missions):,} distinct missions", "missions", "missions per dataset")
    out = list(missions)
    for i, m in enumerate(out):
        if not isinstance(m, str):
            raise DatasetError(f"{name}: mission {i} is not a string (got {type(m).__name__}).")
        if len(m) > limits().mission_chars:
            raise over_limit(name, f"a mission of {len(m):,} characters", "mission_chars", "characters per mission")
    return out


def mission_codes(strings: np.ndarray, name: str) -> tuple[np.ndarray, list[str]]:
    """Per-step fixed-width strings ('<U' or UTF-8 'S') -> (int32 codes, the distinct missions in sorted order)."""
    unique, codes = np.unique(strings.reshape(-1), return_inverse=True)
    if len(unique) > limits().missions:
        raise over_limit(name, f"{len(unique):,} distinct missions", "missions", "missions per dataset")
    if unique.dtype.kind == "S":
        try:
            texts = [bytes(x).decode("utf-8") for x in unique]
        except UnicodeDecodeError:
            raise DatasetError(f"{name}: a mission string is not valid UTF-8.") from None
    else:
        texts = [str(x) for x in unique]
    return codes.astype(np.int32).reshape(-1), texts


EXTRAS = ("direction", "mission")


def _extras(extras, n: int, missions: list[str] | None, name: str) -> dict:
    """obs_extras: direction int64[N] and mission int32[N] (codes into missions; needs missions), nothing else."""
    if not isinstance(extras, dict):
        raise DatasetError(f"{name}: obs_extras must be a dict of per-step arrays, got {type(extras).__name__}.")
    unknown = [str(k)[:40] for k in extras if k not in EXTRAS]
    if unknown:
        raise DatasetError(f"{name}: obs_extras may hold direction and mission, got {', '.join(unknown)}.")
    out = {}
    for key in EXTRAS:
        if key not in extras:
            continue
        arr = np.asarray(extras[key])
        if arr.ndim == 2 and arr.shape[1] == 1:
            arr = arr[:, 0]
        if arr.ndim != 1 or len(arr) != n:
            raise DatasetError(f"{name}: observation {key} must be one value per step ({n:,}), got shape {arr.shape}.")
        codes = whole_numbers(arr, f"observation {key}", name)
        if key == "mission":
            if missions is None:
                raise DatasetError(f"{name}: observation mission codes need the list of missions they index.")
            if len(codes) and (codes.min() < 0 or codes.max() >= len(missions)):
                row = int(np.argmax((codes < 0) | (codes >= len(missions))))
                raise DatasetError(f"{name}: the mission code at row {row} is out of range for {len(missions)} missions.")
            codes = codes.astype(np.int32)
        out[key] = codes
    if missions is not None and "mission" not in out:
        raise DatasetError(f"{name}: missions are given but no per-step mission codes (obs_extras['mission']).")
    return out


def _to_float32(arr: np.ndarray, key: str, name: str) -> np.ndarray:
    """Cast to float32, refusing finite values beyond its range (a cast would turn them into inf with a warning)."""
    if arr.dtype == np.float32:
        return arr
    if arr.dtype.kind == "f" and arr.dtype.itemsize > 4:
        with np.errstate(invalid="ignore"):
            big = np.abs(arr) > F32_MAX
        if big.any():
            flat = big.reshape(len(arr), -1).any(axis=1)
            row = int(np.argmax(flat))
            if not np.isfinite(arr[row]).all():
                raise DatasetError(f"{name}: {key} has inf at row {row}.")
            raise DatasetError(f"{name}: {key} has a value beyond the float32 range (about ±3.4e38) at row {row}.")
    return arr.astype(np.float32)


def _normalise_actions(acts: np.ndarray, name: str) -> np.ndarray:
    if acts.ndim == 2 and acts.shape[1] == 1 and np.issubdtype(acts.dtype, np.integer):
        acts = acts[:, 0]
    if acts.ndim == 1 and np.issubdtype(acts.dtype, np.integer):
        return acts if acts.dtype == np.int64 else acts.astype(np.int64)
    if acts.ndim == 1 and acts.dtype == np.bool_:
        return acts.astype(np.int64)
    if not np.issubdtype(acts.dtype, np.number) or np.iscomplexobj(acts):
        raise DatasetError(f"{name}: actions must be real numbers, got dtype {acts.dtype}.")
    if acts.ndim == 1:
        acts = acts.reshape(-1, 1)
    if acts.ndim != 2:
        raise DatasetError(f"{name}: actions must be [steps] integers or [steps, act_dim] floats, got shape {acts.shape}.")
    return _to_float32(acts, "actions", name)


def _as_dtype(arr, dtype, key: str, name: str) -> np.ndarray:
    arr = np.asarray(arr)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise DatasetError(f"{name}: {key} must be one value per step, got shape {arr.shape}.")
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_) or np.iscomplexobj(arr):
        raise DatasetError(f"{name}: {key} must be real numbers, got dtype {arr.dtype}.")
    if dtype == np.float32:
        return _to_float32(arr, key, name)
    return arr if arr.dtype == dtype else arr.astype(dtype)


def _as_flags(arr, key: str, name: str) -> np.ndarray:
    arr = _as_dtype(arr, np.asarray(arr).dtype, key, name)
    if arr.dtype != np.bool_:
        if np.issubdtype(arr.dtype, np.floating) and not np.isfinite(arr).all():
            raise DatasetError(f"{name}: {key} has NaN or inf at row {int(np.argmax(~np.isfinite(arr)))}.")
        if not np.isin(arr, (0, 1)).all():
            row = int(np.argmax(~np.isin(arr, (0, 1))))
            raise DatasetError(f"{name}: {key} must be 0/1 or true/false, got another value at row {row}.")
        arr = arr.astype(np.bool_)
    return arr


def _check_finite(arr: np.ndarray, key: str, name: str) -> None:
    ok = np.isfinite(arr)
    if not ok.all():
        flat = int(np.argmax(~ok.reshape(len(arr), -1).all(axis=1)))
        what = "NaN" if np.isnan(arr[flat]).any() else "inf"
        raise DatasetError(f"{name}: {key} has {what} at row {flat}.")
