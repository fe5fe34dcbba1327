"""Minari datasets read without a download and without minari itself: h5py for the HDF5 layout
(`data/main_data.hdf5`, one group per episode) and pyarrow for the arrow layout (`data/<id>/*.arrow`).

A Minari episode stores T+1 observations (the final one included) and T actions; the Dataset keeps
the T observations that were acted on. Dict observations (goal-conditioned layouts) are flattened in
key order with feature names like `desired_goal[1]`; an HDF5 dict with an `image` (MiniGrid: image, direction,
mission) keeps its shape instead: observations = the images, Dataset.obs_extras = direction and mission codes,
Dataset.missions the distinct mission strings (hdf5_safety.read_strings checks their widths).

HDF5 episodes' `infos/qpos` and `infos/qvel` (T+1 rows, the reset's info first, so row t is observation t's
state) become `Dataset.infos` under d4rl_format's rules when every episode has both; arrow infos are not read.
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

from .budget import Budget, check_obs_shape, check_rows
from .d4rl_format import INFOS, MAX_INFO_COLUMNS
from .dataset import Dataset, check_n_actions, mission_codes
from .errors import DatasetError
from .hdf5_safety import check_self_contained, read_array, read_strings
from .limits import human_bytes, limits
from .safe_zip import open_checked
from .walk import Entry, refuse_link, walk

MAX_ZIP_BYTES = 2 << 30  # refuse zips that would unpack to more than 2 GiB


def _episode_sort_key(name: str) -> tuple:
    tail = name.rsplit("_", 1)[-1]
    return (0, int(tail)) if tail.isdigit() else (1, name)


def _flatten_h5(node, prefix: str, n_rows: int, budget: Budget) -> tuple[list[np.ndarray], list[str]]:
    if isinstance(node, h5py.Dataset):
        if node.ndim == 0 or node.shape[0] != n_rows:
            raise DatasetError(f"{budget.name}: {node.name} has {node.shape[0] if node.ndim else 0} rows, expected {n_rows}.")
        arr = read_array(node, budget).reshape(n_rows, -1)
        names = [prefix] if arr.shape[1] == 1 and prefix else [f"{prefix}[{i}]" if prefix else f"obs_{i}" for i in range(arr.shape[1])]
        return [arr], names
    arrays, names = [], []
    for key in node.keys():  # h5py lists keys sorted, which is gymnasium's Dict order
        a, n = _flatten_h5(node[key], f"{prefix}/{key}" if prefix else key, n_rows, budget)
        arrays += a
        names += n
    return arrays, names


def _rows(node) -> int:
    if isinstance(node, h5py.Dataset):
        return node.shape[0] if node.ndim else 0
    first = next(iter(node.values()), None)
    return 0 if first is None else _rows(first)


def read_minari_h5(f: h5py.File, name: str, meta: dict) -> Dataset:
    """The caller has run hdf5_safety.check_self_contained on `f`."""
    budget = Budget(name)
    groups = sorted((k for k in f.keys() if k.startswith("episode_")), key=_episode_sort_key)
    if not groups:
        raise DatasetError(f"{name} has no episode_N groups, so it is not a Minari dataset.")
    obs_parts, act_parts, rew, term, trunc, lengths, obs_names = [], [], [], [], [], [], None
    extra_parts = {"direction": [], "mission": []}
    info_parts = {k: [] for k in INFOS} if all(_has_infos(f[g]) for g in groups) else {}
    for g in groups:
        ep = f[g]
        missing = [k for k in ("observations", "actions", "rewards", "terminations", "truncations") if k not in ep]
        if missing:
            raise DatasetError(f"{name}: {g} has no {', '.join(missing)} (a Minari episode needs observations, actions, rewards, terminations, truncations).")
        if not all(isinstance(ep[k], h5py.Dataset) for k in ("rewards", "terminations", "truncations")):
            raise DatasetError(f"{name}: {g} has a group where rewards, terminations or truncations should be arrays.")
        t = ep["rewards"].shape[0] if ep["rewards"].ndim else 0
        if t == 0:
            raise DatasetError(f"{name}: {g} has zero steps.")
        obs_rows = _rows(ep["observations"])
        if obs_rows not in (t, t + 1):
            raise DatasetError(f"{name}: {g} has {obs_rows} observations for {t} steps (expected {t + 1}).")
        check_rows(name, sum(lengths) + t)
        if _is_image_dict(ep["observations"]):
            arrays, names = [_image_dict(ep["observations"], g, obs_rows, t, budget, extra_parts)], []
        else:
            arrays, names = _flatten_h5(ep["observations"], "", obs_rows, budget)
        if isinstance(ep["observations"], h5py.Dataset):
            names = None
        if obs_names is None:
            obs_names = names
        if not isinstance(ep["actions"], h5py.Dataset):
            raise DatasetError(f"{name}: {g} has dict actions, which seqlens does not support (expected a Box or Discrete action space).")
        obs_parts.append(np.concatenate(arrays, axis=1)[:t] if arrays[0].ndim == 2 else arrays[0][:t])
        act_parts.append(read_array(ep["actions"], budget))
        for out, key in ((rew, "rewards"), (term, "terminations"), (trunc, "truncations")):
            a = read_array(ep[key], budget)
            if len(a) != t:
                raise DatasetError(f"{name}: {g} has {len(a)} {key} for {t} rewards; every per-step array must have one row per step.")
            out.append(a)
        for k, parts in info_parts.items():
            parts.append(_episode_info(ep, g, k, obs_rows, budget)[:t])
        lengths.append(t)
    for k, parts in info_parts.items():
        if len({p.shape[1] for p in parts}) > 1:
            raise DatasetError(f"{name}: episodes have different infos/{k} widths ({sorted({p.shape[1] for p in parts})}).")
    widths = {p.shape[1:] for p in obs_parts}
    if len(widths) > 1:
        shown = sorted("×".join(map(str, w)) for w in widths)
        raise DatasetError(f"{name}: episodes have different observation widths ({', '.join(shown)}).")
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    acts = np.concatenate(act_parts)
    extras, missions = {}, None
    for key, parts in extra_parts.items():
        if parts and len(parts) != len(groups):
            raise DatasetError(f"{name}: some episodes' image observations have a {key} and others do not.")
    if extra_parts["direction"]:
        extras["direction"] = np.concatenate(extra_parts["direction"])
    if extra_parts["mission"]:
        width = max(p.dtype.itemsize for p in extra_parts["mission"])
        extras["mission"], missions = mission_codes(
            np.concatenate([p.astype(f"S{width}") for p in extra_parts["mission"]]), name)
    return Dataset(np.concatenate(obs_parts), acts, np.concatenate(rew),
                   np.concatenate(term), np.concatenate(trunc), starts, obs_names, None,
                   meta.get("n_actions"), meta.get("env_id"), name, {"format": "minari", **meta.get("extra", {})},
                   {k: np.concatenate(parts) for k, parts in info_parts.items()}, extras, missions)


IMAGE_DICT = ("image", "direction", "mission")


def _is_image_dict(node) -> bool:
    return isinstance(node, h5py.Group) and isinstance(node.get("image"), h5py.Dataset) and node["image"].ndim >= 3


def _image_dict(node: h5py.Group, g: str, obs_rows: int, t: int, budget: Budget, extras: dict) -> np.ndarray:
    """MiniGrid's dict observation of one episode: the image array (returned), direction and mission (appended to
    `extras`), each checked to have one row per observation; any other key is refused rather than dropped."""
    name = budget.name
    other = [k for k in node.keys() if k not in IMAGE_DICT]
    if other:
        raise DatasetError(f"{name}: {g}/observations holds an image with {', '.join(other[:5])} beside it; seqlens "
                           "reads image, direction and mission of an image observation.")
    for key in node.keys():
        ds = node[key]
        if not isinstance(ds, h5py.Dataset) or ds.ndim == 0 or ds.shape[0] != obs_rows:
            raise DatasetError(f"{name}: {g}/observations/{key} must be an array with one row per observation ({obs_rows:,}).")
    check_obs_shape(name, node["image"].shape)
    image = read_array(node["image"], budget, f"{g}/observations/image")
    if "direction" in node:
        ds = node["direction"]
        if ds.dtype.kind not in "iu" or ds.ndim != 1:
            raise DatasetError(f"{name}: {g}/observations/direction must be one whole number per observation, got "
                               f"shape {ds.shape} of {ds.dtype}.")
        extras["direction"].append(read_array(ds, budget, f"{g}/observations/direction")[:t])
    if "mission" in node:
        extras["mission"].append(read_strings(node["mission"], budget, obs_rows, f"{g}/observations/mission")[:t])
    return image


def _has_infos(ep) -> bool:
    """Both of qpos/qvel under the episode's infos group (one alone cannot set a state, so neither is read)."""
    infos = ep.get("infos") if isinstance(ep, h5py.Group) else None
    return isinstance(infos, h5py.Group) and all(k in infos for k in INFOS)


def _episode_info(ep: h5py.Group, g: str, k: str, obs_rows: int, budget: Budget) -> np.ndarray:
    """infos/k of one episode once its declared shape fits (the file was checked self-contained: hard links only)."""
    ds = ep["infos"][k]
    shape = ds.shape if isinstance(ds, h5py.Dataset) else None
    if shape is None or len(shape) != 2 or shape[0] != obs_rows or not 1 <= shape[1] <= MAX_INFO_COLUMNS \
            or ds.dtype.kind != "f" or ds.dtype.fields is not None:
        got = "a group" if shape is None else f"shape {shape} of {ds.dtype if ds.dtype.fields is None else 'compound'}"
        raise DatasetError(f"{budget.name}: {g}/infos/{k} must be a 2-D float array with one row per observation "
                           f"({obs_rows:,}) and 1 to {MAX_INFO_COLUMNS:,} columns, got {got}.")
    arr = read_array(ds, budget, f"{g}/infos/{k}")
    bad = ~np.isfinite(arr).all(axis=1)
    if bad.any():
        raise DatasetError(f"{budget.name}: {g}/infos/{k} has NaN or inf at row {int(np.argmax(bad))}.")
    return arr


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


def _arrow_row_bytes(t: pa.DataType) -> int:
    """Decoded bytes per row of a column type; variable-length lists count as one 8-byte slot."""
    if pa.types.is_struct(t):
        return sum(_arrow_row_bytes(t.field(i).type) for i in range(t.num_fields))
    if pa.types.is_fixed_size_list(t):
        return t.list_size * _arrow_row_bytes(t.value_type)
    try:
        return max(1, t.bit_width // 8)
    except ValueError:
        return 8


def _read_episode(files: list[Path], episode: str, name: str, budget: Budget, steps_so_far: int) -> pa.Table:
    """One episode's arrow files (listed by the walk: pyarrow is never given a folder to discover), its row count
    and declared size checked before the table is decoded."""
    try:
        dataset = pads.dataset([str(f) for f in files], format="arrow")
        rows = dataset.count_rows()  # IPC footers only: no record batch is decoded
        check_rows(name, steps_so_far + rows)
        declared = rows * sum(_arrow_row_bytes(f.type) for f in dataset.schema)
        budget.spend(declared, f"{rows:,} steps in episode {episode}")
        table = dataset.to_table()
        if table.nbytes > declared:  # variable-length lists: only now is their size known
            budget.spend(table.nbytes - declared, f"variable-length columns in episode {episode}")
    except (pa.ArrowException, OSError) as e:
        raise DatasetError(f"{name}: episode {episode} is not readable Arrow data ({str(e).splitlines()[0]}).") from None
    for col in ("observations", "actions", "rewards", "terminations", "truncations"):
        if col not in table.column_names:
            raise DatasetError(f"{name}: episode {episode} has no {col} column (a Minari episode needs observations, actions, rewards, terminations, truncations).")
    return table


def _arrow_episodes(entries: list[Entry], base: str, name: str) -> list[tuple[str, list[Path]]]:
    """(episode id, its files) for each digit-named folder under `base`, in id order. Files as pyarrow's discovery
    took them (every file below the folder with no part of its path there starting with '_' or '.'), a link or
    special file among them refused."""
    prefix = f"{base}/" if base else ""
    episodes = {e.rel: [] for e in entries if e.parent == base and e.name.isdigit() and e.kind in ("dir", "link")}
    for e in entries:
        if e.rel in episodes:
            refuse_link(e, name)
            continue
        top = e.rel[len(prefix):].split("/", 1)[0] if e.rel.startswith(prefix) else None
        folder = prefix + top if top is not None else None
        below = e.rel[len(folder) + 1:].split("/") if folder in episodes and e.rel != folder else None
        if below and not any(part.startswith(("_", ".")) for part in below) and e.name != "metadata.json":
            refuse_link(e, name)
            if e.kind == "file":
                episodes[folder].append(e.path)
    ordered = sorted(episodes, key=lambda rel: int(rel.rsplit("/", 1)[-1]))
    return [(rel.rsplit("/", 1)[-1], episodes[rel]) for rel in ordered]


def read_minari_arrow(data_dir: Path, name: str, meta: dict, episodes: list[tuple[str, list[Path]]] | None = None) -> Dataset:
    """Arrow episodes `data_dir/<id>/*.arrow`; `episodes` as _arrow_episodes lists them (walked here when None)."""
    if episodes is None:
        episodes = _arrow_episodes(walk(data_dir, name, lambda rel: rel.split("/", 1)[0].isdigit()), "", name)
    obs_parts, act_parts, rew, term, trunc, lengths, obs_names = [], [], [], [], [], [], None
    budget = Budget(name)
    for episode, files in episodes:
        if not files:
            raise DatasetError(f"{name}: episode {episode} holds no arrow file.")
        table = _read_episode(files, episode, name, budget, sum(lengths))
        t = table.num_rows - 1  # arrow rows hold T+1 observations; the other columns are padded by one
        if t <= 0:
            raise DatasetError(f"{name}: episode {episode} has zero steps.")
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
    return Dataset(np.concatenate(obs_parts), np.concatenate(act_parts), np.concatenate(rew),
                   np.concatenate(term), np.concatenate(trunc), starts, obs_names, None,
                   meta.get("n_actions"), meta.get("env_id"), name, {"format": "minari", **meta.get("extra", {})})


def parse_metadata(text: str | bytes | None, name: str = "metadata.json") -> dict:
    """env id, discrete action count and dataset id from Minari's metadata.json (all optional; a
    malformed file is ignored, but a Discrete action count must be a whole number within the limit)."""
    if not text:
        return {}
    _check_json_size(len(text), name)
    try:
        raw = json.loads(text)
        spec = json.loads(raw["env_spec"]) if isinstance(raw.get("env_spec"), str) else raw.get("env_spec") or {}
        action_space = json.loads(raw["action_space"]) if isinstance(raw.get("action_space"), str) else raw.get("action_space") or {}
    except (ValueError, TypeError, KeyError, RecursionError):
        return {}
    if not isinstance(raw, dict) or not isinstance(spec, dict) or not isinstance(action_space, dict):
        return {}
    env_id = spec.get("id")
    dataset_id = raw.get("dataset_id")
    out = {"env_id": env_id if isinstance(env_id, str) else None,
           "extra": {"dataset_id": dataset_id if isinstance(dataset_id, str) else None}}
    if action_space.get("type") == "Discrete":
        out["n_actions"] = check_n_actions(action_space.get("n"), name, "metadata.json action_space n")
    return out


def _read_json_file(path: Path, name: str) -> str | None:
    if path.is_symlink() or not path.is_file():   # a link is never followed (trajectories/walk.py)
        return None
    _check_json_size(path.stat().st_size, name)
    return path.read_text(errors="replace")


def _check_json_size(size: int, name: str) -> None:
    if size > limits().json_bytes:
        raise DatasetError(f"{name}: metadata.json is {human_bytes(size)}; the limit is {human_bytes(limits().json_bytes)} of JSON (SEQLENS_MAX_JSON_BYTES).")


def read_minari_dir(path: Path, name: str) -> Dataset:
    """A Minari dataset folder (or its data/ folder), walked once by trajectories/walk.py: no link is followed, and
    one among the files read (data, data/metadata.json, main_data.hdf5, an episode folder or its files) is refused."""
    def descend(rel: str) -> bool:   # data/, then data/<id>/ and everything below it (or <id>/ at the root)
        parts = rel.split("/")
        return parts == ["data"] or (parts[0] == "data" and len(parts) > 1 and parts[1].isdigit()) or parts[0].isdigit()

    entries = walk(path, name, descend)
    by_rel = {e.rel: e for e in entries}
    if "data" in by_rel:
        refuse_link(by_rel["data"], name)
    base = "data" if by_rel.get("data") and by_rel["data"].kind == "dir" else ""
    if not base:   # the root is the data folder: entries under a top-level <id>/ are episodes, not data/<id>/
        entries = [e for e in entries if not e.rel.startswith("data/")]
    else:
        entries = [e for e in entries if e.rel.startswith("data/")]
    prefix = f"{base}/" if base else ""
    found = {k: by_rel.get(prefix + k) for k in ("metadata.json", "main_data.hdf5")}
    for e in found.values():
        if e is not None:
            refuse_link(e, name)
    meta = parse_metadata(_read_json_file(path / found["metadata.json"].rel, name), name) \
        if found["metadata.json"] is not None and found["metadata.json"].kind == "file" else {}
    if found["main_data.hdf5"] is not None and found["main_data.hdf5"].kind == "file":
        return read_hdf5(path / found["main_data.hdf5"].rel, name, meta)
    episodes = _arrow_episodes(entries, base, name)
    if episodes:
        return read_minari_arrow(path / base if base else path, name, meta, episodes)
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
            check_self_contained(f, name)  # before any data is read: no links, external or virtual data
            if any(k.startswith("episode_") for k in f.keys()):
                if meta is None and isinstance(path_or_file, (str, Path)):
                    meta = parse_metadata(_read_json_file(Path(path_or_file).with_name("metadata.json"), name), name)
                return read_minari_h5(f, name, meta or {})
            if "observations" in f:
                return read_d4rl_h5(f, name)
            raise DatasetError(f"{name} is neither a Minari file (episode_N groups) nor a D4RL file (observations, actions, rewards, terminals, timeouts); it holds: {', '.join(list(f.keys())[:10]) or 'nothing'}.")
    except (OSError, KeyError, RuntimeError) as e:  # h5py reports damaged chunks lazily, on read
        raise DatasetError(f"{name} is a damaged HDF5 file ({str(e).splitlines()[0]}).") from None


def read_minari_zip(path: Path, name: str) -> Dataset:
    """Only the members a Minari dataset needs are read, their declared sizes checked first."""
    zf, members = open_checked(path, name, MAX_ZIP_BYTES, DatasetError)
    with zf:
        h5 = [m for m in members if m.filename.endswith("main_data.hdf5")]
        metas = {m.filename.rsplit("/", 1)[0] if "/" in m.filename else "": m for m in members if m.filename.endswith("metadata.json")}
        try:
            if h5:
                folder = h5[0].filename.rsplit("/", 1)[0] if "/" in h5[0].filename else ""
                _spend_members(name, [h5[0]] + ([metas[folder]] if folder in metas else []))
                meta = parse_metadata(zf.read(metas[folder]) if folder in metas else None, name)
                return read_hdf5(io.BytesIO(zf.read(h5[0])), name, meta)
            arrows = [m for m in members if m.filename.endswith(".arrow")]
            if arrows:
                data_dir = arrows[0].filename.rsplit("/", 2)[0] if arrows[0].filename.count("/") >= 2 else ""
                prefix = f"{data_dir}/" if data_dir else ""
                wanted = [m for m in arrows if m.filename.startswith(prefix)]
                wanted += [metas[data_dir]] if data_dir in metas else []
                _spend_members(name, wanted)
                with tempfile.TemporaryDirectory() as tmp:
                    for m in wanted:
                        zf.extract(m, tmp)
                    return read_minari_dir(Path(tmp) / data_dir, name)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError) as e:
            raise DatasetError(f"{name} is a damaged zip file ({str(e).splitlines()[0]}).") from None
    raise DatasetError(f"{name} does not hold a Minari dataset (expected data/main_data.hdf5 or arrow episode folders inside the zip).")


def _spend_members(name: str, members: list[zipfile.ZipInfo]) -> None:
    budget = Budget(name)
    for m in members:
        if m.filename.endswith(".json"):
            _check_json_size(m.file_size, name)
        budget.spend(m.file_size, f"{m.filename}" if len(members) == 1 else f"{len(members):,} members to unpack")
