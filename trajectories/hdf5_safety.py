"""HDF5 files checked before any data is read.

HDF5 can make a read return bytes from *other* files: external links, soft links (to paths that an
external link then resolves), virtual datasets (mapped from other files) and external raw storage
(`create_dataset(..., external=[(path, offset, size)])`). A reader on a shared server must never
follow any of them, so `check_self_contained` walks the whole file first, by link, without
opening what a link points to, and refuses all but hard links to plain datasets and groups. The
walk is bounded by limits().hdf5_objects and MAX_DEPTH, and visits each group once (hard links can
form cycles). `read_array` then reads one dataset after checking its declared size and dtype.
"""
from __future__ import annotations

import h5py
import numpy as np

from .budget import Budget, check_rows, over_limit
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
