"""NumPy .npz archives: seqlens' own layout, plus the common key spellings other tools write.

Nothing is decoded before every array it will read has been checked from its .npy header: the
declared shape and dtype (no pickled objects, no complex numbers), the member's declared size
(a member shorter than its header says is truncated) and the total against limits(). np.load
would allocate the declared shape before reading a byte, so it is not used.

`infos/qpos` and `infos/qvel` (the keys of D4RL's `get_dataset()` dict, so `np.savez(path, **d4rl_dict)` reads
too) become `Dataset.infos` under d4rl_format's rules: both or neither, 2-D floats, one row per observation,
1..MAX_INFO_COLUMNS columns, finite; anything else under infos/ is not read.

Shaped observations (images [N, H, W(, C)], frame stacks [N, S, H, W]) of uint8 or float32 in a member stored
uncompressed (np.savez, and write_npz for shaped data) are memory-mapped read-only in place (counted against
limits().mapped_bytes, not decode_bytes); a compressed member is decoded like any other array. Dict observations
(MiniGrid): `observations` is the image, `observations_direction` one integer per step and `observations_mission`
one fixed-width string per step ('<U' or UTF-8 'S', never objects) whose width is checked against
limits().mission_chars from its header before it is read.
"""
from __future__ import annotations

import json
import zipfile
import zlib
from pathlib import Path

import numpy as np

from .budget import Budget, check_mapped, check_mission_width, check_obs_shape, check_rows, with_map_hint
from .d4rl_format import INFOS, MAX_INFO_COLUMNS
from .dataset import SHAPED_DTYPES, Dataset, check_meta, mission_codes, starts_from_flags, starts_from_ids, whole_numbers
from .digest import map_array
from .errors import DatasetError
from .limits import human_bytes, limits
from .names import ALIASES, first_present, jsonable
from .safe_zip import check_count, check_entry_count, stored_data_offset

META_KEY = "seqlens_meta"
PER_STEP = ("observations", "actions", "rewards", "terminated", "truncated", "episode", "direction", "mission")
EXTRA_KEYS = {"observations_direction": "direction", "observations_mission": "mission"}   # archive key -> field
INFO_KEYS = {f"infos/{k}": k for k in INFOS}   # archive key -> Dataset.infos key
BROKEN = (ValueError, zipfile.BadZipFile, OSError, EOFError, zlib.error)  # what a damaged member raises
MAX_HEADER = 10_000  # numpy's own default bound on a .npy header


def read_npz(path: Path, name: str) -> Dataset:
    with open(path, "rb") as f:
        magic = f.read(6)
    if magic == b"\x93NUMPY":
        raise DatasetError(f"{name} holds a single .npy array, not a .npz archive of named arrays (observations, actions, rewards, ...).")
    if not magic.startswith(b"PK"):
        raise DatasetError(f"{name} is not a valid .npz archive (expected a numpy zip of named arrays).")
    check_entry_count(path, name, DatasetError)
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:
        raise DatasetError(f"{name} is not a valid .npz archive (expected a numpy zip of arrays): {_first_line(e)}.") from None
    with zf:
        members = {i.filename[:-4]: i for i in zf.infolist() if i.filename.endswith(".npy")}
        check_count(len(zf.infolist()), name, DatasetError)
        plan = _plan(members, name)
        full = {field: _header(zf, members[key], key, name) for field, key in plan.items()}
        headers = {field: h[:2] for field, h in full.items()}
        mapped = _mappable(path, members[plan["observations"]], full["observations"])
        _check_declared(headers, plan, name, mapped is not None)
        arrays = {field: _read(zf, members[plan[field]], plan[field], name) for field in plan
                  if not (field == "observations" and mapped is not None)}
    if mapped is not None:
        arrays["observations"] = map_array(path, mapped, *reversed(headers["observations"]))
    return _dataset(arrays, name)


def _mappable(path: Path, info: zipfile.ZipInfo, header: tuple) -> int | None:
    """The file offset of shaped observations that can be mapped in place (a stored member, C order, uint8 or
    float32, more than one axis per step), else None (the member is decoded)."""
    shape, dtype, fortran, header_bytes = header
    if len(shape) < 3 or dtype not in SHAPED_DTYPES or (fortran and len(shape) > 1):
        return None
    with open(path, "rb") as fp:
        start = stored_data_offset(fp, info)
        if start is None:
            return None
        fp.seek(start)
        if fp.read(6) != b"\x93NUMPY":
            return None
        end = start + header_bytes + int(np.prod(shape, dtype=object)) * dtype.itemsize
        if end > fp.seek(0, 2):   # the zip directory overstates the member: decoding it reports the truncation
            return None
    return start + header_bytes


def _plan(members: dict, name: str) -> dict[str, str]:
    """Dataset field -> archive key, for the arrays that will be read (only the first episode layout found)."""
    keys = {k.lower(): k for k in members}
    plan = {}
    for field in ("observations", "actions", "rewards", "terminated", "truncated", "episode_starts", "episode", "episode_lengths"):
        if field in ("episode", "episode_lengths") and any(f in plan for f in ("episode_starts", "episode")):
            continue
        key = first_present(keys, ALIASES[field])
        if key is not None:
            plan[field] = keys[key]
        elif field in ("observations", "actions", "rewards"):
            raise DatasetError(f"{name} has no {field} array (expected one of {', '.join(ALIASES[field])}; found {', '.join(members) or 'nothing'}).")
    for key, field in EXTRA_KEYS.items():
        if key in keys:
            plan[field] = keys[key]
    if META_KEY in members:
        plan["meta"] = META_KEY
    if all(key in keys for key in INFO_KEYS):   # one alone cannot set a MuJoCo state: neither is read
        plan.update({key: keys[key] for key in INFO_KEYS})
    return plan


def _header(zf: zipfile.ZipFile, info: zipfile.ZipInfo, key: str, name: str) -> tuple:
    """(shape, dtype, fortran_order, header bytes) from the member's .npy header, checked against its declared size."""
    try:
        with zf.open(info) as fp:
            version = np.lib.format.read_magic(fp)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(fp, max_header_size=MAX_HEADER)
            elif version in ((2, 0), (3, 0)):  # 3.0 only differs for non-latin-1 field names (refused below)
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(fp, max_header_size=MAX_HEADER)
            else:
                raise ValueError(f"unknown .npy version {version}")
            header_bytes = fp.tell()
    except BROKEN as e:
        raise DatasetError(f"{name}: array '{key}' is not a readable .npy member ({_first_line(e)}).") from None
    if dtype.hasobject:
        raise DatasetError(f"{name}: array '{key}' holds Python objects, which could only be read with pickle; store plain numeric arrays.")
    if dtype.kind == "c":
        raise DatasetError(f"{name}: array '{key}' holds complex numbers ({dtype}); store real numbers.")
    if dtype.kind not in "biufUS" or dtype.fields is not None:
        raise DatasetError(f"{name}: array '{key}' has dtype {dtype}, expected numbers, booleans or strings.")
    data_bytes = int(np.prod(shape, dtype=object)) * dtype.itemsize
    if info.file_size < header_bytes + data_bytes:
        raise DatasetError(f"{name}: array '{key}' is truncated or corrupt (its header declares {data_bytes:,} bytes of data but the member holds {max(0, info.file_size - header_bytes):,}).")
    return shape, dtype, fortran, header_bytes


def _check_declared(headers: dict, plan: dict, name: str, mapped: bool = False) -> None:
    _check_infos(headers, name)
    _check_extras(headers, plan, name)
    budget = Budget(name)
    for field, (shape, dtype) in headers.items():
        if field in PER_STEP and shape:
            check_rows(name, shape[0], plan[field])
        if field == "observations" and len(shape) > 2:
            check_obs_shape(name, shape)
        if field == "observations" and mapped:
            check_mapped(name, shape, dtype.itemsize, plan[field])
        elif field == "observations" and len(shape) > 2:
            try:
                budget.spend_array(shape, dtype.itemsize, plan[field])
            except DatasetError as e:
                raise with_map_hint(e, "npz") from None
        else:
            budget.spend_array(shape, dtype.itemsize, plan[field])
    if "meta" in headers:
        shape, dtype = headers["meta"]
        size = int(np.prod(shape, dtype=object)) * dtype.itemsize
        if size > limits().json_bytes:
            raise DatasetError(f"{name}: the {META_KEY} entry is {human_bytes(size)}; the limit is {human_bytes(limits().json_bytes)} of JSON (SEQLENS_MAX_JSON_BYTES).")


def _check_extras(headers: dict, plan: dict, name: str) -> None:
    n = headers["observations"][0][0] if headers["observations"][0] else 0
    for field in ("direction", "mission"):
        if field not in headers:
            continue
        shape, dtype = headers[field]
        key = plan[field]
        if field == "mission":
            check_mission_width(name, dtype, key)
        elif dtype.kind not in "iu":
            raise DatasetError(f"{name}: {key} must be one whole number per step, got dtype {dtype}.")
        if len(shape) != 1 or shape[0] != n:
            raise DatasetError(f"{name}: {key} must hold one value per step ({n:,}), got shape {shape}.")


def _check_infos(headers: dict, name: str) -> None:
    """Declared shapes of infos/qpos, infos/qvel against the observations' rows, as d4rl_format says them."""
    obs_shape = headers["observations"][0]
    if not obs_shape:
        return   # a single observation value is refused by _dataset, before infos are looked at
    n = obs_shape[0]
    for key in INFO_KEYS:
        if key not in headers:
            continue
        shape, dtype = headers[key]
        if len(shape) != 2 or shape[0] != n or not 1 <= shape[1] <= MAX_INFO_COLUMNS or dtype.kind != "f":
            raise DatasetError(f"{name}: {key} must be a 2-D float array with one row per observation ({n:,}) and 1 to "
                               f"{MAX_INFO_COLUMNS:,} columns, got shape {shape} of {dtype}.")


def _read(zf: zipfile.ZipFile, info: zipfile.ZipInfo, key: str, name: str) -> np.ndarray:
    try:
        with zf.open(info) as fp:
            return np.lib.format.read_array(fp, allow_pickle=False, max_header_size=MAX_HEADER)
    except BROKEN as e:
        raise DatasetError(f"{name}: array '{key}' is truncated or corrupt ({_first_line(e)}).") from None


def _dataset(arrays: dict, name: str) -> Dataset:
    for field in ("observations", "actions", "rewards"):
        if arrays[field].ndim == 0:
            raise DatasetError(f"{name}: {field} is a single value, expected one row per step.")
    n = len(arrays["rewards"])
    term = arrays.get("terminated", np.zeros(n, bool))
    trunc = arrays.get("truncated", np.zeros(n, bool))
    if "episode_starts" in arrays:
        starts = arrays["episode_starts"]
    elif "episode" in arrays:
        starts = _starts_from_grouped_ids(arrays["episode"], n, name)
    elif "episode_lengths" in arrays:
        starts = _starts_from_lengths(arrays["episode_lengths"], n, name)
    else:
        starts = starts_from_flags(term, trunc) if n and np.ndim(term) and np.ndim(trunc) else np.zeros(0, np.int64)
    meta = _parse_meta(arrays["meta"], name) if "meta" in arrays else {}
    infos = {}
    for key, k in INFO_KEYS.items():
        if key in arrays:
            bad = ~np.isfinite(arrays[key]).all(axis=1)
            if bad.any():
                raise DatasetError(f"{name}: {key} has NaN or inf at row {int(np.argmax(bad))}.")
            infos[k] = arrays[key]
    extras, missions = {}, None
    if "direction" in arrays:
        extras["direction"] = arrays["direction"]
    if "mission" in arrays:
        extras["mission"], missions = mission_codes(arrays["mission"], name)
    return Dataset(arrays["observations"], arrays["actions"], arrays["rewards"], term, trunc, starts,
                   meta.get("obs_names"), meta.get("act_names"), meta.get("n_actions"), meta.get("env_id"),
                   name, meta.get("metadata") or {}, infos, extras, missions)


def _starts_from_grouped_ids(ids: np.ndarray, n: int, name: str) -> np.ndarray:
    """Episode starts from per-step ids. Rows must already be grouped by episode: an id that comes
    back after another episode is refused (regrouping would silently reorder the user's steps)."""
    ids = ids.reshape(len(ids), -1)[:, 0] if ids.ndim == 2 and ids.shape[1] == 1 else ids
    if ids.ndim != 1 or len(ids) != n:
        raise DatasetError(f"{name}: the episode id array has shape {ids.shape}, expected one id per step ({n}).")
    if ids.dtype.kind == "f" and not np.isfinite(ids).all():
        raise DatasetError(f"{name}: the episode id is NaN or inf at row {int(np.argmax(~np.isfinite(ids)))}.")
    if n == 0:
        return np.zeros(0, np.int64)
    starts = starts_from_ids(ids)
    firsts = ids[starts]
    order = np.argsort(firsts, kind="stable")
    repeat = firsts[order][1:] == firsts[order][:-1]
    if repeat.any():
        again = int(order[1:][repeat].min())  # the earliest episode that reuses an id
        raise DatasetError(f"{name}: rows must be grouped by episode, but the episode starting at row {int(starts[again])} reuses the id of an earlier one, after other episodes.")
    return starts


def _starts_from_lengths(lengths: np.ndarray, n: int, name: str) -> np.ndarray:
    lengths = whole_numbers(lengths, "episode_lengths", name)
    if (lengths < 1).any():
        i = int(np.argmax(lengths < 1))
        raise DatasetError(f"{name}: episode_lengths must be positive, got zero or less at index {i}.")
    if lengths.sum() != n:
        raise DatasetError(f"{name}: episode_lengths sum to {int(lengths.sum()):,} but there are {n:,} steps.")
    return np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)


def _parse_meta(arr: np.ndarray, name: str) -> dict:
    if arr.dtype.kind not in "US" or arr.size != 1:
        raise DatasetError(f"{name}: the {META_KEY} entry must be one JSON string, got an array of shape {arr.shape} and dtype {arr.dtype}.")
    try:
        meta = json.loads(arr.reshape(-1)[0])
    except (ValueError, TypeError, RecursionError):
        raise DatasetError(f"{name}: the {META_KEY} entry is not valid JSON.") from None
    return check_meta(meta, name, f"the {META_KEY} entry")


def write_npz(ds: Dataset, path: Path, compress: bool = True, map_observations: bool = True) -> None:
    """`map_observations` False deflates shaped observations too (read back decoded, not mapped): for small shipped
    files whose frames compress ~100x (envs.behaviour.DEFLATED_SAMPLES)."""
    meta = {"obs_names": ds.obs_names, "act_names": ds.act_names, "n_actions": ds.n_actions,
            "env_id": ds.env_id, "metadata": ds.metadata}
    save = np.savez_compressed if compress else np.savez
    infos = {f"infos/{k}": v for k, v in written_infos(ds).items()}
    extras = {}
    if "direction" in ds.obs_extras:
        extras["observations_direction"] = ds.obs_extras["direction"]
    if "mission" in ds.obs_extras:
        texts = np.array(ds.missions or [""], dtype=str)
        extras["observations_mission"] = texts[ds.obs_extras["mission"]]
    arrays = dict(observations=ds.observations, actions=ds.actions, rewards=ds.rewards, terminated=ds.terminated,
                  truncated=ds.truncated, episode_starts=ds.episode_starts,
                  **{META_KEY: np.array(json.dumps(meta, default=jsonable))}, **infos, **extras)
    with open(path, "wb") as f:  # a file handle stops numpy from appending ".npz" to other suffixes
        if ds.shaped and map_observations:
            _save_stored_observations(f, arrays, compress)
        else:
            save(f, **arrays)


def _save_stored_observations(f, arrays: dict, compress: bool) -> None:
    """np.savez's layout, with the observations stored uncompressed (so the reader maps them in place) and the
    other arrays deflated when `compress`. Written a block of rows at a time: a mapped array is never copied whole."""
    method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with zipfile.ZipFile(f, "w", allowZip64=True) as zf:
        for key, arr in arrays.items():
            info = zipfile.ZipInfo(key + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_STORED if key == "observations" else method
            with zf.open(info, "w", force_zip64=True) as out:
                if key != "observations":
                    np.lib.format.write_array(out, np.asanyarray(arr), allow_pickle=False)
                    continue
                np.lib.format.write_array_header_2_0(out, {"descr": np.lib.format.dtype_to_descr(arr.dtype),
                                                           "fortran_order": False, "shape": arr.shape})
                rows = max(1, (64 << 20) // max(1, arr[:1].nbytes))
                for i in range(0, len(arr), rows):
                    out.write(np.ascontiguousarray(arr[i:i + rows]).tobytes())


def written_infos(ds: Dataset) -> dict[str, np.ndarray]:
    """The infos write_d4rl writes (both of qpos/qvel, 2-D; non-floats as float64): what the readers read back."""
    if not all(k in ds.infos and ds.infos[k].ndim == 2 for k in INFOS):
        return {}
    return {k: ds.infos[k] if ds.infos[k].dtype.kind == "f" else ds.infos[k].astype(np.float64) for k in INFOS}


def _first_line(e: Exception) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0].rstrip(".")
