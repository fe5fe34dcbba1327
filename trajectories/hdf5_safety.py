"""HDF5 files checked before any data is read.

HDF5 can make a read return bytes from *other* files: external links, soft links (to paths that an
external link then resolves), virtual datasets (mapped from other files) and external raw storage
(`create_dataset(..., external=[(path, offset, size)])`). A reader on a shared server must never
follow any of them, so `check_self_contained` walks the whole file first, by link, without
opening what a link points to, and refuses all but hard links to plain datasets and groups. The
walk is bounded by limits().hdf5_objects and MAX_DEPTH, and visits each group once (hard links can
form cycles). `read_array` then reads one dataset after checking its declared size and dtype.

`read_observations` maps shaped observations (images, frame stacks) of uint8 / float32 in place when the dataset is
contiguous and unfiltered in a file on disk (h5py's `id.get_offset()`: the raw bytes' file offset; external storage
was refused above, so the bytes are this file's), counted against limits().mapped_bytes; chunked or compressed
uint8 ones are read lazily by the D4RL reader (trajectories/lazy_h5.py: nothing is decoded at open), other chunked or
compressed ones are decoded whole under the decode budget. `read_strings` reads per-step mission strings: fixed-length ones have
their width checked from the dtype before reading; variable-length ones live uncompressed in the file's global
heap, so what a block of rows allocates is bounded by the file's own size, and each block is checked as it is read.
"""
from __future__ import annotations

import os

import h5py
import numpy as np

from .budget import Budget, check_mapped, check_mission_width, check_obs_shape, check_rows, over_limit, with_map_hint
from .dataset import SHAPED_DTYPES
from .digest import map_array
from .errors import DatasetError
from .limits import limits

MAX_DEPTH = 32  # Minari nests dict observations a few levels deep; nothing legitimate nests 32
LINK_KINDS = {h5py.SoftLink: "a soft link", h5py.ExternalLink: "an external link"}


def check_self_contained(f: h5py.File, name: str) -> None:
    """Refuse links other than hard links, virtual datasets and external storage anywhere in the file."""
    max_objects = limits().hdf5_objects
    seen = {_address(f)}
    stack, count = [(f, 0)], 0
    while stack:
        group, depth = stack.pop()
        for key in group:  # iterates link names only; nothing is opened yet
            count += 1
            if count > max_objects:
                raise over_limit(name, f"more than {max_objects:,} HDF5 objects", "hdf5_objects", "objects per file")
            path = f"{group.name.rstrip('/')}/{key}"
            link = group.get(key, getlink=True)
            if not isinstance(link, h5py.HardLink):
                kind = LINK_KINDS.get(type(link), "a user-defined link")
                raise DatasetError(f"{name}: {path} is {kind}, which could read another file; seqlens reads only self-contained HDF5 files (hard links only).")
            obj = group[key]  # a hard link: the object lives in this file
            if isinstance(obj, h5py.Dataset):
                check_storage(obj, path, name)
            elif isinstance(obj, h5py.Group):
                addr = _address(obj)
                if addr in seen:  # a second hard link to a group already walked (or a cycle)
                    continue
                seen.add(addr)
                if depth + 1 > MAX_DEPTH:
                    raise DatasetError(f"{name}: {path} is nested more than {MAX_DEPTH} groups deep; refusing to walk it.")
                stack.append((obj, depth + 1))


def _address(obj) -> tuple:
    info = h5py.h5o.get_info(obj.id)
    return info.fileno, info.addr


def check_storage(ds: h5py.Dataset, path: str, name: str) -> None:
    if ds.is_virtual:
        raise DatasetError(f"{name}: {path} is a virtual dataset, which maps data from other files; seqlens reads only self-contained HDF5 files.")
    if ds.external:
        raise DatasetError(f"{name}: {path} keeps its data in an external file, which could be any file on this server; seqlens reads only self-contained HDF5 files.")


def read_array(ds: h5py.Dataset, budget: Budget, what: str | None = None) -> np.ndarray:
    """ds[()] once its dtype is plain numeric and its declared size fits the budget."""
    what = what or ds.name.lstrip("/")
    dtype = ds.dtype
    if dtype.kind not in "biuf" or dtype.fields is not None or h5py.check_vlen_dtype(dtype) is not None:
        raise DatasetError(f"{budget.name}: {ds.name} has dtype {_dtype_name(dtype)}, expected plain numbers (int, float or bool).")
    if ds.ndim:
        check_rows(budget.name, ds.shape[0], what)
    budget.spend_array(ds.shape, dtype.itemsize, what)
    return ds[()]


def _dtype_name(dtype: np.dtype) -> str:
    if dtype.fields is not None:
        return "compound"
    if h5py.check_string_dtype(dtype) is not None:
        return "string"
    if h5py.check_vlen_dtype(dtype) is not None:
        return "variable-length"
    if h5py.check_ref_dtype(dtype) is not None:
        return "reference"
    return str(dtype)


def read_attr_str(obj, key: str, max_bytes: int = 4096) -> str | None:
    """A short string attribute (env_id), or None; its declared size is checked before it is read."""
    if key not in obj.attrs:
        return None
    aid = obj.attrs.get_id(key)
    if aid.get_storage_size() > max_bytes or aid.shape not in ((), None, (1,)):
        return None
    value = obj.attrs[key]
    if isinstance(value, np.ndarray):
        value = value.reshape(-1)[0] if value.size else None
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return value if isinstance(value, str) else None


STRING_ROWS = 4_096   # variable-length strings read (and checked) a block of rows at a time


def read_observations(ds: h5py.Dataset, budget: Budget, what: str | None = None) -> np.ndarray:
    """Observations: shaped ones mapped from the file when their storage allows it, else read_array."""
    what = what or ds.name.lstrip("/")
    if ds.ndim < 3:
        return read_array(ds, budget, what)
    check_rows(budget.name, ds.shape[0], what)
    check_obs_shape(budget.name, ds.shape)
    filename = ds.file.filename
    offset = ds.id.get_offset() if ds.chunks is None and ds.compression is None and not ds.external else None
    if offset is None or ds.dtype not in SHAPED_DTYPES or ds.file.driver != "sec2" or not _on_disk(filename):
        try:
            return read_array(ds, budget, what)
        except DatasetError as e:
            raise with_map_hint(e, "hdf5") from None
    check_mapped(budget.name, ds.shape, ds.dtype.itemsize, what)
    if offset + int(np.prod(ds.shape, dtype=object)) * ds.dtype.itemsize > os.path.getsize(filename):
        raise DatasetError(f"{budget.name}: {what} is truncated (the file ends before the {ds.shape} array it declares).")
    return map_array(filename, offset, ds.dtype, ds.shape)


def _on_disk(filename) -> bool:
    return isinstance(filename, str) and os.path.isfile(filename)


def read_strings(ds: h5py.Dataset, budget: Budget, n_rows: int, what: str) -> np.ndarray:
    """One string per step as a fixed-width UTF-8 bytes array ('S'), each at most limits().mission_chars characters."""
    name = budget.name
    info = h5py.check_string_dtype(ds.dtype)
    if ds.ndim != 1 or ds.shape[0] != n_rows:
        raise DatasetError(f"{name}: {what} must hold one string per step ({n_rows:,}), got shape {ds.shape}.")
    if info is None:
        raise DatasetError(f"{name}: {what} must hold strings, got dtype {_dtype_name(ds.dtype)}.")
    cap = limits().mission_chars * 4   # UTF-8 bytes
    if info.length is not None:   # fixed-length: the width is declared
        check_mission_width(name, np.dtype(f"S{info.length}"), what)
        budget.spend_array(ds.shape, ds.dtype.itemsize, what)
        return np.asarray(ds[()], dtype=f"S{max(1, info.length)}")
    parts = []
    for i in range(0, n_rows, STRING_ROWS):
        block = [x if isinstance(x, bytes) else str(x).encode("utf-8") for x in ds[i:i + STRING_ROWS]]
        longest = max((len(x) for x in block), default=0)
        if longest > cap:
            raise over_limit(name, f"a string of {longest:,} bytes in {what}", "mission_chars", "characters per mission")
        budget.spend(sum(len(x) for x in block), what)
        parts.append(np.array(block, dtype=f"S{max(1, longest)}"))
    width = max((p.dtype.itemsize for p in parts), default=1)
    return np.concatenate([p.astype(f"S{width}") for p in parts]) if parts else np.zeros(0, "S1")
