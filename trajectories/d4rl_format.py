"""D4RL-style HDF5: flat `observations, actions, rewards, terminals, timeouts`, episodes split on
terminals | timeouts (the step after a done flag starts a new episode)."""
from __future__ import annotations

import h5py
import numpy as np

from .dataset import Dataset, starts_from_flags
from .errors import DatasetError


def read_d4rl_h5(f: h5py.File, name: str) -> Dataset:
    missing = [k for k in ("observations", "actions", "rewards") if k not in f]
    if missing:
        raise DatasetError(f"{name}: D4RL file has no {', '.join(missing)} (expected observations, actions, rewards, terminals, timeouts).")
    arrays = {k: f[k][()] for k in ("observations", "actions", "rewards") if isinstance(f[k], h5py.Dataset)}
    if len(arrays) < 3:
        raise DatasetError(f"{name}: observations, actions and rewards must be arrays, not groups.")
    n = len(arrays["rewards"])
    flags = {key: f[key][()] for key in ("terminals", "timeouts") if key in f}
    if not flags:
        raise DatasetError(f"{name}: D4RL file has neither terminals nor timeouts, so episodes cannot be split.")
    lengths = {k: len(v) for k, v in {**arrays, **flags}.items()}
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
    env_id = f.attrs.get("env_id")
    return Dataset(arrays["observations"], arrays["actions"], arrays["rewards"], term, trunc, starts,
                   env_id=str(env_id) if env_id is not None else None, source=name, metadata={"format": "d4rl-hdf5"})


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
