"""D4RL-style HDF5: flat `observations, actions, rewards, terminals, timeouts`, episodes split on
terminals | timeouts (the step after a done flag starts a new episode)."""
from __future__ import annotations

from pathlib import PurePath

import h5py
import numpy as np

from .budget import Budget
from .dataset import Dataset, starts_from_flags
from .errors import DatasetError
from .hdf5_safety import read_array, read_attr_str
from .names import dataset_env_id


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
    budget = Budget(name)  # read_array checks each declared size before reading
    arrays = {k: read_array(f[k], budget) for k in ("observations", "actions", "rewards")}
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
    return Dataset(arrays["observations"], arrays["actions"], arrays["rewards"], term, trunc, starts,
                   env_id=_env_id(read_attr_str(f, "env_id"), name), source=name, metadata={"format": "d4rl-hdf5"})


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
        f["observations"] = ds.observations
        f["actions"] = ds.actions
        f["rewards"] = ds.rewards
        f["terminals"] = ds.terminated
        f["timeouts"] = trunc
        if ds.env_id:
            f.attrs["env_id"] = ds.env_id
