"""Chunked or compressed HDF5 image arrays read lazily: rows decoded when a page asks for them.

An HDF5 image array stored contiguous is memory-mapped (hdf5_safety.read_observations); one stored in chunks or
through a filter (gzip, lzf, shuffle) cannot be, and reading it whole would decode gigabytes (1M Atari frame stacks
are 28 GB) for a page that draws a few hundred steps. `LazyRows` keeps its own read-only handle of the file and
decodes a block of rows (the chunk's rows) on request, keeping the most recent blocks in an LRU bounded by bytes
(LAZY_CACHE_BYTES). It is what `Dataset.observations` holds then, behind the same contract as a memory map: indexing
returns ndarrays (`obs[i]`, `obs[a:b]`, `obs[int array of any shape]`), `reshape(n, -1)` is another lazy view (the
flat_observations rows), the array is read-only, and `np.asarray(obs)` (a whole read) is refused past the decode
budget. Only uint8 arrays are lazy (float images would need a NaN scan of every row at open); float ones are decoded
whole under the decode budget as before.

Hostile input (SECURITY.md): the declared shape is checked against the step and per-observation limits and the
mapped-bytes limit before anything is read; each chunk's decoded size against limits().chunk_bytes (what one read
may allocate: a filter decodes a chunk into a buffer of its declared size, so a compression bomb cannot grow past
it); only HDF5's built-in filters are accepted (deflate, shuffle, fletcher32, lzf: no plugin is ever loaded);
external and virtual storage were refused by check_self_contained and are checked again on the reopened handle.
The digest (`raw_digest`, the content key) hashes the stored chunk bytes without decoding them.
"""
from __future__ import annotations

import math
import os
import threading
from collections import OrderedDict
from types import SimpleNamespace

import h5py
import numpy as np
import xxhash

from .budget import check_mapped, check_obs_shape, check_rows, over_limit
from .errors import DatasetError
from .hdf5_safety import check_storage, read_observations
from .limits import human_bytes, limits

LAZY_CACHE_BYTES = 256 << 20   # decoded row blocks one lazy array keeps (least recently used dropped first)
BUILTIN_FILTERS = {h5py.h5z.FILTER_DEFLATE: "gzip", h5py.h5z.FILTER_SHUFFLE: "shuffle",
                   h5py.h5z.FILTER_FLETCHER32: "fletcher32", 32000: "lzf"}   # 32000: h5py's own lzf, built in
LAZY_DTYPES = (np.dtype(np.uint8),)


def lazy_eligible(ds: h5py.Dataset) -> bool:
    """Shaped uint8 observations stored in chunks (so a memory map cannot read them) in a file on disk."""
    return ds.ndim >= 3 and ds.chunks is not None and ds.dtype in LAZY_DTYPES and ds.file.driver == "sec2" \
        and isinstance(ds.file.filename, str) and os.path.isfile(ds.file.filename)


def check_chunked(ds: h5py.Dataset, name: str, what: str) -> None:
    """Declared shape, chunk size and filters within the limits (nothing is read)."""
    check_rows(name, ds.shape[0], what)
    check_obs_shape(name, ds.shape)
    check_mapped(name, ds.shape, ds.dtype.itemsize, what)
    chunk = int(np.prod(ds.chunks, dtype=object)) * ds.dtype.itemsize
    if chunk > limits().chunk_bytes:
        raise over_limit(name, f"{what} in chunks of {human_bytes(chunk)} decoded", "chunk_bytes",
                         "decoded per HDF5 chunk")
    plist = ds.id.get_create_plist()
    for i in range(plist.get_nfilters()):
        code = plist.get_filter(i)[0]
        if code not in BUILTIN_FILTERS:
            raise DatasetError(f"{name}: {what} is compressed with HDF5 filter {code}, which seqlens does not read "
                               f"(it reads {', '.join(sorted(set(BUILTIN_FILTERS.values())))}).")


class LazyRows:
    """A read-only [N, *row_shape] uint8 array backed by one chunked HDF5 dataset (see the module docstring)."""

    def __init__(self, filename: str, path: str, name: str, row_shape: tuple | None = None,
                 cache_bytes: int = LAZY_CACHE_BYTES, _shared=None):
        self.filename, self.path, self.name = filename, path, name
        if _shared is None:
            f = h5py.File(filename, "r")
            try:
                ds = f[path]
                if not isinstance(ds, h5py.Dataset) or not lazy_eligible(ds):
                    raise DatasetError(f"{name}: {path} changed while it was being opened.")
                check_storage(ds, path, name)
                check_chunked(ds, name, path.lstrip("/"))
            except BaseException:
                f.close()
                raise
            st = os.stat(filename)
            _shared = SimpleNamespace(file=f, ds=ds, lock=threading.Lock(), cache=OrderedDict(), cached=0,
                                      limit=int(cache_bytes), block=int(ds.chunks[0]), stored_shape=tuple(ds.shape),
                                      reads=0, stat=(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns))
        self._s = _shared
        n, stored = _shared.stored_shape[0], _shared.stored_shape[1:]
        self.row_shape = tuple(stored if row_shape is None else row_shape)
        if math.prod(self.row_shape) != math.prod(stored):
            raise ValueError(f"cannot view rows of shape {stored} as {self.row_shape}")
        self.shape, self.dtype = (n, *self.row_shape), _shared.ds.dtype
        self.flags = SimpleNamespace(writeable=False, c_contiguous=True)

    # ---- the ndarray facts consumers read ----------------------------------------------------------
    ndim = property(lambda self: len(self.shape))
    size = property(lambda self: math.prod(self.shape))
    nbytes = property(lambda self: self.size * self.dtype.itemsize)
    itemsize = property(lambda self: self.dtype.itemsize)
    reads = property(lambda self: self._s.reads, doc="row blocks decoded so far (a test's proof of laziness)")

    def __len__(self) -> int:
        return self.shape[0]

    def setflags(self, write=None, **_) -> None:
        if write:
            raise ValueError("a lazily read HDF5 array is read-only")

    def reshape(self, *shape) -> "LazyRows":
        shape = tuple(shape[0]) if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else tuple(shape)
        if not shape or shape[0] not in (len(self), -1):
            raise ValueError("a lazy HDF5 array reshapes its rows only (reshape(n, ...))")
        rest = list(shape[1:])
        if -1 in rest:
            rest[rest.index(-1)] = math.prod(self.row_shape) // max(1, -math.prod(rest))
        return LazyRows(self.filename, self.path, self.name, tuple(rest), _shared=self._s)

    def __array__(self, dtype=None, copy=None):
        if self.nbytes > limits().decode_bytes:
            raise over_limit(self.name, f"{len(self):,} steps of observations read whole ({human_bytes(self.nbytes)})",
                             "decode_bytes", "per file")
        out = self[0:len(self)]
        return out if dtype is None else out.astype(dtype)

    def __getitem__(self, key):
        rest = ()
        if isinstance(key, tuple):
            key, rest = (key[0] if key else slice(None)), key[1:]
        if isinstance(key, (int, np.integer)):
            i = int(key) + len(self) if key < 0 else int(key)
            if not 0 <= i < len(self):
                raise IndexError(f"index {int(key)} is out of bounds for axis 0 with size {len(self)}")
            out = self._rows(np.array([i]))[0]
        elif isinstance(key, slice):
            out = self._rows(np.arange(*key.indices(len(self))))
        else:
            idx = np.asarray(key)
            if idx.dtype == np.bool_:
                idx = np.flatnonzero(idx)
            if idx.dtype.kind not in "iu":
                raise IndexError("a lazy HDF5 array is indexed by integers, slices or boolean masks")
            idx = np.where(idx < 0, idx + len(self), idx).astype(np.int64)
            if idx.size and (idx.min() < 0 or idx.max() >= len(self)):
                raise IndexError(f"index out of bounds for axis 0 with size {len(self)}")
            out = self._rows(idx.reshape(-1)).reshape(*idx.shape, *self.row_shape)
        return out[(slice(None),) * (out.ndim - len(self.row_shape)) + rest] if rest else out

    def _rows(self, idx: np.ndarray) -> np.ndarray:
        """Rows `idx` (1-D) in order, each block of rows decoded once (LRU)."""
        s = self._s
        out = np.empty((len(idx), *self.row_shape), self.dtype)
        if not len(idx):
            return out
        blocks = idx // s.block
        for b in np.unique(blocks):
            rows = np.flatnonzero(blocks == b)
            data = self._block(int(b))
            out[rows] = data[idx[rows] - int(b) * s.block].reshape(len(rows), *self.row_shape)
        return out

    def _block(self, b: int) -> np.ndarray:
        s = self._s
        with s.lock:
            hit = s.cache.get(b)
            if hit is not None:
                s.cache.move_to_end(b)
                return hit
            lo, hi = b * s.block, min(s.stored_shape[0], (b + 1) * s.block)
            try:
                data = s.ds[lo:hi]
            except (OSError, RuntimeError, ValueError):
                raise DatasetError(f"{self.name}: rows {lo:,}-{hi - 1:,} of the observations could not be decoded "
                                   "(a damaged chunk).") from None
            data.setflags(write=False)
            s.reads += 1
            s.cache[b], s.cached = data, s.cached + data.nbytes
            while s.cached > s.limit and len(s.cache) > 1:
                _, old = s.cache.popitem(last=False)
                s.cached -= old.nbytes
            return data

    def raw_digest(self) -> str:
        """xxh3_128 over the shape, dtype, filters and every stored chunk's bytes as stored (nothing decoded)."""
        s = self._s
        h = xxhash.xxh3_128(f"{self.dtype.str}{tuple(self.shape)}{s.ds.chunks}".encode())
        with s.lock:
            plist = s.ds.id.get_create_plist()
            h.update(repr([plist.get_filter(i)[:3] for i in range(plist.get_nfilters())]).encode())
            for i in range(s.ds.id.get_num_chunks()):
                info = s.ds.id.get_chunk_info(i)
                mask, raw = s.ds.id.read_direct_chunk(info.chunk_offset)
                h.update(repr((info.chunk_offset, mask, len(raw))).encode())
                h.update(raw)
        return h.hexdigest()

    def __reduce__(self):   # a pickled copy (a cache) reopens the file: never a whole copy of the frames
        return (_reopen, (self.filename, self.path, self.name, self.row_shape))

    def __repr__(self) -> str:
        return f"LazyRows({self.name!r}, {self.path}, shape={self.shape}, dtype={self.dtype})"


def _reopen(filename, path, name, row_shape):
    return LazyRows(filename, path, name, row_shape)


def lazy_observations(ds: h5py.Dataset, budget, what: str | None = None):
    """A D4RL file's observations: chunked / compressed uint8 images as LazyRows (checked first, nothing read), else
    hdf5_safety.read_observations (mapped when contiguous, else decoded under the budget)."""
    if not lazy_eligible(ds):
        return read_observations(ds, budget, what)
    check_chunked(ds, budget.name, what or ds.name.lstrip("/"))
    return LazyRows(ds.file.filename, ds.name, budget.name)


def is_lazy(arr) -> bool:
    return isinstance(arr, LazyRows)
