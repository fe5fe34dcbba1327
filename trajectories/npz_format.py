"""NumPy .npz archives: seqlens' own layout, plus the common key spellings other tools write."""
from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np

from .dataset import Dataset, starts_from_flags, starts_from_ids
from .errors import DatasetError
from .names import ALIASES, first_present, jsonable

META_KEY = "seqlens_meta"


def read_npz(path: Path, name: str) -> Dataset:
    with open(path, "rb") as f:
        magic = f.read(6)
    if magic == b"\x93NUMPY":
        raise DatasetError(f"{name} holds a single .npy array, not a .npz archive of named arrays (observations, actions, rewards, ...).")
    if not magic.startswith(b"PK"):  # np.load would otherwise try to unpickle it
        raise DatasetError(f"{name} is not a valid .npz archive (expected a numpy zip of named arrays).")
    try:
        archive = np.load(path, allow_pickle=False)
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as e:
        raise DatasetError(f"{name} is not a valid .npz archive (expected a numpy zip of arrays): {_first_line(e)}.") from None
    with archive:
        keys = {k.lower(): k for k in archive.files}

        def get(field: str, required: bool = True):
            key = first_present(keys, ALIASES[field])
            if key is None:
                if required:
                    raise DatasetError(f"{name} has no {field} array (expected one of {', '.join(ALIASES[field])}; found {', '.join(archive.files) or 'nothing'}).")
                return None
            try:
                return archive[keys[key]]
            except ValueError as e:  # object arrays need pickle, which we refuse
                raise DatasetError(f"{name}: array '{keys[key]}' could not be read without pickle ({_first_line(e)}); store plain numeric arrays.") from None
            except (zipfile.BadZipFile, OSError, EOFError) as e:
                raise DatasetError(f"{name}: array '{keys[key]}' is corrupt ({_first_line(e)}).") from None

        obs, acts, rews = get("observations"), get("actions"), get("rewards")
        n = len(rews)
        term = get("terminated", required=False)
        trunc = get("truncated", required=False)
        term = np.zeros(n, bool) if term is None else term
        trunc = np.zeros(n, bool) if trunc is None else trunc
        starts = get("episode_starts", required=False)
        if starts is None:
            ids = get("episode", required=False)
            lengths = get("episode_lengths", required=False)
            if ids is not None:
                starts = starts_from_ids(ids) if len(ids) else ids
            elif lengths is not None:
                starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]) if len(lengths) else lengths
            else:
                starts = starts_from_flags(term, trunc) if n else np.zeros(0, np.int64)
        meta = {}
        if META_KEY in archive.files:
            try:
                meta = json.loads(str(archive[META_KEY]))
            except (ValueError, TypeError):
                raise DatasetError(f"{name}: the {META_KEY} entry is not valid JSON.") from None
    return Dataset(obs, acts, rews, term, trunc, starts, meta.get("obs_names"), meta.get("act_names"),
                   meta.get("n_actions"), meta.get("env_id"), name, meta.get("metadata", {}))


def write_npz(ds: Dataset, path: Path, compress: bool = True) -> None:
    meta = {"obs_names": ds.obs_names, "act_names": ds.act_names, "n_actions": ds.n_actions,
            "env_id": ds.env_id, "metadata": ds.metadata}
    save = np.savez_compressed if compress else np.savez
    with open(path, "wb") as f:  # a file handle stops numpy from appending ".npz" to other suffixes
        save(f, observations=ds.observations, actions=ds.actions, rewards=ds.rewards,
             terminated=ds.terminated, truncated=ds.truncated, episode_starts=ds.episode_starts,
             **{META_KEY: np.array(json.dumps(meta, default=jsonable))})


def _first_line(e: Exception) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0].rstrip(".")
