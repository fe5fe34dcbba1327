"""Minari datasets read without a download and without minari itself: h5py for the HDF5 layout
(`data/main_data.hdf5`, one group per episode) and pyarrow for the arrow layout (`data/<id>/*.arrow`).

A Minari episode stores T+1 observations (the final one included) and T actions; the Dataset keeps
the T observations that were acted on. Dict observations (goal-conditioned layouts) are flattened in
key order with feature names like `desired_goal[1]`.
"""
from __future__ import annotations

import io
import json
import tempfile
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pyarrow as pa
import pyarrow.dataset as pads

from .dataset import Dataset
from .errors import DatasetError
from .safe_zip import open_checked

MAX_ZIP_BYTES = 2 << 30  # refuse zips that would unpack to more than 2 GiB


def _episode_sort_key(name: str) -> tuple:
    tail = name.rsplit("_", 1)[-1]
    return (0, int(tail)) if tail.isdigit() else (1, name)


def _flatten_h5(node, prefix: str, n_rows: int, source: str) -> tuple[list[np.ndarray], list[str]]:
    if isinstance(node, h5py.Dataset):
        arr = node[()]
        if arr.ndim == 0 or arr.shape[0] != n_rows:
            raise DatasetError(f"{source}: {node.name} has {arr.shape[0] if arr.ndim else 0} rows, expected {n_rows}.")
        arr = arr.reshape(n_rows, -1)
        names = [prefix] if arr.shape[1] == 1 and prefix else [f"{prefix}[{i}]" if prefix else f"obs_{i}" for i in range(arr.shape[1])]
        return [arr], names
    arrays, names = [], []
    for key in node.keys():  # h5py lists keys sorted, which is gymnasium's Dict order
        a, n = _flatten_h5(node[key], f"{prefix}/{key}" if prefix else key, n_rows, source)
        arrays += a
        names += n
    return arrays, names


def _rows(node) -> int:
    if isinstance(node, h5py.Dataset):
        return node.shape[0] if node.ndim else 0
    first = next(iter(node.values()), None)
    return 0 if first is None else _rows(first)


def read_minari_h5(f: h5py.File, name: str, meta: dict) -> Dataset:
    groups = sorted((k for k in f.keys() if k.startswith("episode_")), key=_episode_sort_key)
    if not groups:
        raise DatasetError(f"{name} has no episode_N groups, so it is not a Minari dataset.")
    obs_parts, act_parts, rew, term, trunc, lengths, obs_names = [], [], [], [], [], [], None
    for g in groups:
        ep = f[g]
        missing = [k for k in ("observations", "actions", "rewards", "terminations", "truncations") if k not in ep]
        if missing:
            raise DatasetError(f"{name}: {g} has no {', '.join(missing)} (a Minari episode needs observations, actions, rewards, terminations, truncations).")
        t = ep["rewards"].shape[0]
        if t == 0:
            raise DatasetError(f"{name}: {g} has zero steps.")
        obs_rows = _rows(ep["observations"])
        if obs_rows not in (t, t + 1):
            raise DatasetError(f"{name}: {g} has {obs_rows} observations for {t} steps (expected {t + 1}).")
        arrays, names = _flatten_h5(ep["observations"], "", obs_rows, name)
        if isinstance(ep["observations"], h5py.Dataset):
            names = None
        if obs_names is None:
            obs_names = names
        if not isinstance(ep["actions"], h5py.Dataset):
            raise DatasetError(f"{name}: {g} has dict actions, which seqlens does not support (expected a Box or Discrete action space).")
        obs_parts.append(np.concatenate(arrays, axis=1)[:t])
        act_parts.append(ep["actions"][()])
        for out, key in ((rew, "rewards"), (term, "terminations"), (trunc, "truncations")):
            a = ep[key][()]
            if len(a) != t:
                raise DatasetError(f"{name}: {g} has {len(a)} {key} for {t} rewards; every per-step array must have one row per step.")
            out.append(a)
        lengths.append(t)
    widths = {p.shape[1] for p in obs_parts}
    if len(widths) > 1:
        raise DatasetError(f"{name}: episodes have different observation widths ({sorted(widths)}).")
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    acts = np.concatenate(act_parts)
    return Dataset(np.concatenate(obs_parts).astype(np.float32, copy=False), acts, np.concatenate(rew),
                   np.concatenate(term), np.concatenate(trunc), starts, obs_names, None,
                   meta.get("n_actions"), meta.get("env_id"), name, {"format": "minari", **meta.get("extra", {})})


def _flatten_arrow(col: pa.Array, prefix: str) -> tuple[list[np.ndarray], list[str]]:
    if pa.types.is_struct(col.type):
        arrays, names = [], []
        for i in range(col.type.num_fields):
            key = col.type.field(i).name
            a, n = _flatten_arrow(col.field(i), f"{prefix}/{key}" if prefix else key)
            arrays += a
            names += n
        return arrays, names
    if pa.types.is_fixed_size_list(col.type) or pa.types.is_list(col.type):
        arr = col.flatten().to_numpy(zero_copy_only=False).reshape(len(col), -1)
    else:
        arr = col.to_numpy(zero_copy_only=False).reshape(len(col), -1)
    return [arr], [f"{prefix}[{i}]" for i in range(arr.shape[1])] if prefix else [f"obs_{i}" for i in range(arr.shape[1])]


def read_minari_arrow(data_dir: Path, name: str, meta: dict) -> Dataset:
    episode_dirs = sorted((p for p in data_dir.iterdir() if p.is_dir() and p.name.isdigit()), key=lambda p: int(p.name))
    obs_parts, act_parts, rew, term, trunc, lengths, obs_names = [], [], [], [], [], [], None
    for d in episode_dirs:
        try:
            table = pads.dataset(str(d), format="arrow", ignore_prefixes=["_", ".", "metadata.json"]).to_table()
        except (pa.ArrowException, OSError) as e:
            raise DatasetError(f"{name}: episode {d.name} is not readable Arrow data ({str(e).splitlines()[0]}).") from None
        t = table.num_rows - 1  # arrow rows hold T+1 observations; the other columns are padded by one
        if t <= 0:
            raise DatasetError(f"{name}: episode {d.name} has zero steps.")
        arrays, names = _flatten_arrow(table.column("observations").combine_chunks(), "")
        structured = pa.types.is_struct(table.column("observations").type)
        obs_names = obs_names or (names if structured else None)
        obs_parts.append(np.concatenate(arrays, axis=1)[:t])
        act_parts.append(table.column("actions").combine_chunks().flatten().to_numpy(zero_copy_only=False).reshape(t + 1, -1)[:t]
                         if pa.types.is_fixed_size_list(table.column("actions").type)
                         else table.column("actions").to_numpy()[:t])
        rew.append(table.column("rewards").to_numpy()[:t])
        term.append(table.column("terminations").to_numpy(zero_copy_only=False)[:t])
        trunc.append(table.column("truncations").to_numpy(zero_copy_only=False)[:t])
        lengths.append(t)
    if not lengths:
        raise DatasetError(f"{name}: the Minari arrow dataset has no episodes.")
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    return Dataset(np.concatenate(obs_parts).astype(np.float32, copy=False), np.concatenate(act_parts), np.concatenate(rew),
                   np.concatenate(term), np.concatenate(trunc), starts, obs_names, None,
                   meta.get("n_actions"), meta.get("env_id"), name, {"format": "minari", **meta.get("extra", {})})


def parse_metadata(text: str | bytes | None) -> dict:
    """env id, discrete action count and dataset id from Minari's metadata.json (all optional)."""
    if not text:
        return {}
    try:
        raw = json.loads(text)
        spec = json.loads(raw["env_spec"]) if isinstance(raw.get("env_spec"), str) else raw.get("env_spec") or {}
        action_space = json.loads(raw["action_space"]) if isinstance(raw.get("action_space"), str) else raw.get("action_space") or {}
    except (ValueError, TypeError, KeyError):
        return {}
    out = {"env_id": spec.get("id"), "extra": {"dataset_id": raw.get("dataset_id")}}
    if action_space.get("type") == "Discrete":
        out["n_actions"] = int(action_space.get("n"))
    return out


def read_minari_dir(path: Path, name: str) -> Dataset:
    data = path / "data" if (path / "data").is_dir() else path
    meta = parse_metadata((data / "metadata.json").read_text() if (data / "metadata.json").is_file() else None)
    h5 = data / "main_data.hdf5"
    if h5.is_file():
        return read_hdf5(h5, name, meta)
    if any(p.is_dir() and p.name.isdigit() for p in data.iterdir()):
        return read_minari_arrow(data, name, meta)
    raise DatasetError(f"{name} is not a Minari dataset directory (expected data/main_data.hdf5 or data/<episode>/ arrow folders).")


def read_hdf5(path_or_file, name: str, meta: dict | None = None) -> Dataset:
    """A Minari main_data.hdf5 or a D4RL-style file, told apart by what is inside."""
    from .d4rl_format import read_d4rl_h5

    try:
        f = h5py.File(path_or_file, "r")
    except (OSError, ValueError) as e:
        raise DatasetError(f"{name} is not a readable HDF5 file (truncated or corrupt: {str(e).splitlines()[0]}).") from None
    try:
        with f:
            if any(k.startswith("episode_") for k in f.keys()):
                if meta is None and isinstance(path_or_file, (str, Path)):
                    sidecar = Path(path_or_file).with_name("metadata.json")
                    meta = parse_metadata(sidecar.read_text() if sidecar.is_file() else None)
                return read_minari_h5(f, name, meta or {})
            if "observations" in f:
                return read_d4rl_h5(f, name)
            raise DatasetError(f"{name} is neither a Minari file (episode_N groups) nor a D4RL file (observations, actions, rewards, terminals, timeouts); it holds: {', '.join(list(f.keys())[:10]) or 'nothing'}.")
    except (OSError, KeyError, RuntimeError) as e:  # h5py reports damaged chunks lazily, on read
        raise DatasetError(f"{name} is a damaged HDF5 file ({str(e).splitlines()[0]}).") from None


def read_minari_zip(path: Path, name: str) -> Dataset:
    zf, members = open_checked(path, name, MAX_ZIP_BYTES, DatasetError)
    with zf:
        h5 = [m for m in members if m.filename.endswith("main_data.hdf5")]
        metas = {m.filename.rsplit("/", 1)[0]: m for m in members if m.filename.endswith("metadata.json")}
        try:
            if h5:
                folder = h5[0].filename.rsplit("/", 1)[0] if "/" in h5[0].filename else ""
                meta = parse_metadata(zf.read(metas[folder]) if folder in metas else None)
                return read_hdf5(io.BytesIO(zf.read(h5[0])), name, meta)
            if any(m.filename.endswith(".arrow") for m in members):
                with tempfile.TemporaryDirectory() as tmp:
                    zf.extractall(tmp, members)
                    data = next(p.parent.parent for p in Path(tmp).rglob("*.arrow"))
                    return read_minari_dir(data, name)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError) as e:
            raise DatasetError(f"{name} is a damaged zip file ({str(e).splitlines()[0]}).") from None
    raise DatasetError(f"{name} does not hold a Minari dataset (expected data/main_data.hdf5 or arrow episode folders inside the zip).")
