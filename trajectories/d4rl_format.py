"""D4RL-style HDF5: flat `observations, actions, rewards, terminals, timeouts`, episodes split on
terminals | timeouts (the step after a done flag starts a new episode). `infos/qpos` and `infos/qvel`
(the MuJoCo state at each observation, which frames are drawn from) are kept in `Dataset.infos` when both
are there; other infos are not read. Shaped observations (images, frame stacks) are mapped from the file when stored
contiguous (hdf5_safety.read_observations), read lazily when chunked or compressed uint8 (lazy_h5.py); a MiniGrid dict observation's other parts sit beside them as
`observations_direction` (integers) and `observations_mission` (strings), one row per step, as in the npz layout."""
from __future__ import annotations

from pathlib import PurePath

import h5py
import numpy as np

from .budget import Budget
from .dataset import Dataset, mission_codes, starts_from_flags
from .errors import DatasetError
from .hdf5_safety import check_storage, read_array, read_attr_str, read_strings
from .lazy_h5 import lazy_observations
from .names import dataset_env_id

INFOS = ("qpos", "qvel")
MAX_INFO_COLUMNS = 1_000   # MuJoCo's largest stock models have under 100 joints' worth of qpos


def read_d4rl_h5(f: h5py.File, name: str) -> Dataset:
    """The caller has run hdf5_safety.check_self_contained on `f`."""
    missing = [k for k in ("observations", "actions", "rewards") if k not in f]
    if missing:
        raise DatasetError(f"{name}: D4RL file has no {', '.join(missing)} (expected observations, actions, rewards, terminals, timeouts).")
    keys = [k for k in ("observations", "actions", "rewards", "terminals", "timeouts") if k in f]
    if not all(isinstance(f[k], h5py.Dataset) for k in keys):
        raise DatasetError(f"{name}: observations, actions, rewards, terminals and timeouts must be arrays, not groups.")
    if "terminals" not in f and "timeouts" not in f:
        raise DatasetError(f"{name}: D4RL file has neither terminals nor timeouts, so episodes cannot be split.")
    infos = _infos(f, name)   # declared shapes checked before anything is read
    budget = Budget(name)  # read_array checks each declared size before reading
    arrays = {"observations": lazy_observations(f["observations"], budget)}   # mapped if contiguous, else lazy
    arrays.update({k: read_array(f[k], budget) for k in ("actions", "rewards")})
    flags = {k: read_array(f[k], budget) for k in ("terminals", "timeouts") if k in f}
    n = len(arrays["rewards"]) if arrays["rewards"].ndim else 0
    lengths = {k: len(v) if v.ndim else 0 for k, v in {**arrays, **flags}.items()}
    if len(set(lengths.values())) > 1:
        raise DatasetError(f"{name}: arrays have mismatched lengths ({', '.join(f'{k}: {v}' for k, v in lengths.items())}).")
    if n == 0:
        raise DatasetError(f"{name} has no steps.")
    term = flags.get("terminals", np.zeros(n, bool)).reshape(-1)
    trunc = flags.get("timeouts", np.zeros(n, bool)).reshape(-1)
    try:
        starts = starts_from_flags(term.astype(bool), trunc.astype(bool))
    except ValueError:
        raise DatasetError(f"{name}: terminals and timeouts must be 0/1 flags.") from None
    qs = {k: read_array(v, budget, f"infos/{k}") for k, v in infos.items()}
    for k, v in qs.items():
        bad = ~np.isfinite(v).all(axis=1)
        if bad.any():
            raise DatasetError(f"{name}: infos/{k} has NaN or inf at row {int(np.argmax(bad))}.")
    extras, missions = _extras(f, n, budget)
    return Dataset(arrays["observations"], arrays["actions"], arrays["rewards"], term, trunc, starts,
                   env_id=_env_id(read_attr_str(f, "env_id"), name), source=name, metadata={"format": "d4rl-hdf5"},
                   infos=qs, obs_extras=extras, missions=missions)


def _extras(f: h5py.File, n: int, budget: Budget) -> tuple[dict, list[str] | None]:
    """observations_direction / observations_mission beside a dict observation's image (hard links only: the file
    was checked self-contained)."""
    extras, missions = {}, None
    for key in ("observations_direction", "observations_mission"):
        if key in f and not isinstance(f[key], h5py.Dataset):
            raise DatasetError(f"{budget.name}: {key} must be an array, not a group.")
    if "observations_direction" in f:
        ds = f["observations_direction"]
        if ds.dtype.kind not in "iu" or ds.ndim != 1 or ds.shape[0] != n:
            raise DatasetError(f"{budget.name}: observations_direction must hold one whole number per step ({n:,}), "
                               f"got shape {ds.shape} of {ds.dtype}.")
        extras["direction"] = read_array(ds, budget)
    if "observations_mission" in f:
        extras["mission"], missions = mission_codes(read_strings(f["observations_mission"], budget, n,
                                                                 "observations_mission"), budget.name)
    return extras, missions


def _infos(f: h5py.File, name: str) -> dict[str, h5py.Dataset]:
    """infos/qpos and infos/qvel as unread datasets, once their declared shapes and dtypes fit: 2-D floats, one row
    per observation, 1..MAX_INFO_COLUMNS columns. Only one of the two cannot set a state, so neither is kept then."""
    group = f.get("infos", getlink=True)
    if not isinstance(group, h5py.HardLink) or not isinstance(f["infos"], h5py.Group):
        return {}   # a soft or external link was already refused by check_self_contained
    g = f["infos"]
    if not all(k in g for k in INFOS):
        return {}
    obs = f["observations"]
    n = obs.shape[0] if obs.ndim else 0
    if n == 0:
        return {}   # the caller says the file has no steps
    out = {}
    for k in INFOS:
        ds = g[k] if isinstance(g.get(k, getlink=True), h5py.HardLink) else None   # never open a link's target
        if not isinstance(ds, h5py.Dataset):
            got = "a group" if isinstance(ds, h5py.Group) else "a link"
        elif ds.ndim != 2 or ds.shape[0] != n or not 1 <= ds.shape[1] <= MAX_INFO_COLUMNS or ds.dtype.kind != "f" \
                or ds.dtype.fields is not None:
            got = f"shape {ds.shape} of {ds.dtype if ds.dtype.fields is None else 'compound'}"
        else:
            check_storage(ds, f"/infos/{k}", name)   # again here: never read external or virtual data
            out[k] = ds
            continue
        raise DatasetError(f"{name}: infos/{k} must be a 2-D float array with one row per observation ({n:,}) and 1 to "
                           f"{MAX_INFO_COLUMNS:,} columns, got {got}.")
    return out


def _env_id(stored: str | None, name: str) -> str | None:
    """The file's env_id, else the task its D4RL name says ("hopper-medium-v2.hdf5" -> Hopper-v5); a D4RL-style
    stored id maps the same way. D4RL files themselves carry no env id."""
    if stored:
        return dataset_env_id(stored) or stored
    return dataset_env_id(PurePath(name).stem)


def write_d4rl(ds: Dataset, path) -> None:
    """Flat D4RL layout. Episodes that end without a done flag get a timeout so the split round-trips."""
    trunc = ds.truncated.copy()
    last = ds.episode_ends - 1
    trunc[last] |= ~(ds.terminated[last] | ds.truncated[last])
    with h5py.File(path, "w") as f:
        if ds.shaped:   # contiguous (so the reader maps it), written a block of rows at a time
            out = f.create_dataset("observations", shape=ds.observations.shape, dtype=ds.observations.dtype)
            rows = max(1, (64 << 20) // max(1, ds.observations[:1].nbytes))
            for i in range(0, ds.n_transitions, rows):
                out[i:i + rows] = ds.observations[i:i + rows]
        else:
            f["observations"] = ds.observations
        if "direction" in ds.obs_extras:
            f["observations_direction"] = ds.obs_extras["direction"]
        if "mission" in ds.obs_extras:
            texts = np.array([m.encode("utf-8") for m in ds.missions] or [b""])
            f["observations_mission"] = texts[ds.obs_extras["mission"]]
        f["actions"] = ds.actions
        f["rewards"] = ds.rewards
        f["terminals"] = ds.terminated
        f["timeouts"] = trunc
        if all(k in ds.infos and ds.infos[k].ndim == 2 for k in INFOS):   # what the reader reads back
            for k in INFOS:
                v = ds.infos[k]
                f[f"infos/{k}"] = v if v.dtype.kind == "f" else v.astype(np.float64)
        if ds.env_id:
            f.attrs["env_id"] = ds.env_id
