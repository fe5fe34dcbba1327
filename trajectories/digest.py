"""Content digests of large observation arrays, and read-only file mappings whose digest reads the file.

An image dataset's observations can be gigabytes (1M Atari steps of 84x84 uint8 frame stacks are ~28 GB, one 84x84
frame per step ~7 GB): sha256 runs at ~0.4 GB/s there, xxh3_128 (the `xxhash` package) at ~10 GB/s. The digest is a
cache key, not a signature: 128 bits make an accidental collision negligible, and a deliberate one only makes a session
see its own collided upload's figures (the key also holds the file name, names and metadata; see analysis/core/identity).

A mapped array is hashed by reading its bytes from the file with ordinary reads, not through the mapping: pages read
through a mapping stay in this process's resident set (RSS would grow by the array's size), pages read with read() stay
in the kernel's page cache only. The file is read only while it is still the one that was mapped (same inode, size and
modification time); otherwise the digest reads through the mapping.
"""
from __future__ import annotations

import mmap
import os

import numpy as np
import xxhash

CHUNK = 64 << 20          # rows of an in-memory array hashed at a time
READ_BUFFER = 16 << 20    # bytes of a mapped file read at a time (a fresh 64 MB bytes object per read ran 6x slower)
_STAT = "_seqlens_file_stat"


def map_array(path, offset: int, dtype: np.dtype, shape: tuple) -> np.memmap:
    """A read-only mapping of `shape` `dtype` values at byte `offset` of `path` (C order)."""
    path = os.fspath(path)
    st = os.stat(path)
    arr = np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=tuple(shape), order="C")
    setattr(arr, _STAT, (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns))
    return arr


def is_mapped(arr) -> bool:
    """Read from the file on use: a memory map, or a lazily read HDF5 array (trajectories/lazy_h5.py)."""
    return isinstance(arr, np.memmap) or isinstance(getattr(arr, "base", None), (np.memmap, mmap.mmap)) \
        or hasattr(arr, "raw_digest")


def fast_digest(arr: np.ndarray) -> str:
    """xxh3_128 over dtype, shape and the C-order bytes of `arr`, 64 MiB at a time (no whole copy)."""
    if hasattr(arr, "raw_digest"):   # a lazily read HDF5 array: its stored chunks, never decoded
        return arr.raw_digest()
    h = xxhash.xxh3_128()
    h.update(f"{arr.dtype.str}{tuple(arr.shape)}".encode())
    if _same_file(arr):
        left, buf = arr.nbytes, memoryview(bytearray(READ_BUFFER))   # one buffer reused: no allocation per block
        with open(arr.filename, "rb", buffering=0) as f:
            f.seek(arr.offset)
            while left:
                n = f.readinto(buf[:min(READ_BUFFER, left)])
                if not n:
                    raise OSError(f"{arr.filename} is shorter than the array mapped from it")
                h.update(buf[:n])
                left -= n
        return h.hexdigest()
    row_bytes = max(1, arr.nbytes // max(1, len(arr))) if arr.ndim else arr.nbytes
    rows = max(1, CHUNK // row_bytes)
    for i in range(0, max(1, len(arr)) if arr.ndim else 1, rows):
        h.update(np.ascontiguousarray(arr[i:i + rows] if arr.ndim else arr).data)
    return h.hexdigest()


def _same_file(arr) -> bool:
    stat = getattr(arr, _STAT, None)
    if stat is None or not isinstance(arr.base, mmap.mmap) or not arr.flags.c_contiguous or not arr.filename:
        return False   # a slice of a mapping (or another array): its bytes are read through the array
    try:
        st = os.stat(arr.filename)
    except OSError:
        return False
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns) == stat


def take_rows(arr, rows: np.ndarray) -> np.ndarray:
    """arr[rows] for sorted distinct `rows` (1-D). From a mapping whose file is still the one mapped, the rows are
    read with pread, a run of consecutive rows per call: pages read through the map stay in this process's resident
    set, so windows drawn over a 2.8 GB Atari file grew the server by a gigabyte (Embeddings' 500 sampled windows)."""
    rows = np.asarray(rows, np.int64)
    if not isinstance(arr, np.memmap) or not _same_file(arr) or not len(rows):
        return np.asarray(arr[rows])
    row_bytes = arr.nbytes // max(1, len(arr))
    out = np.empty((len(rows), *arr.shape[1:]), arr.dtype)
    buf = memoryview(out.reshape(-1).view(np.uint8))
    breaks = np.flatnonzero(np.diff(rows) != 1) + 1
    fd = os.open(arr.filename, os.O_RDONLY)
    try:
        for lo, hi in zip(np.concatenate([[0], breaks]), np.concatenate([breaks, [len(rows)]])):
            want, got = (hi - lo) * row_bytes, 0
            while got < want:
                n = os.preadv(fd, [buf[lo * row_bytes + got:hi * row_bytes]], arr.offset + rows[lo] * row_bytes + got)
                if n <= 0:
                    raise OSError(f"{arr.filename} is shorter than the array mapped from it")
                got += n
    finally:
        os.close(fd)
    return out

