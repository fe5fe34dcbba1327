"""Declared sizes checked against limits() before anything is allocated (see limits.py).

A reader makes one Budget per file and spends the declared size of every array it is about to
decode; the first that would go over raises a DatasetError naming the limit and its variable.
"""
from __future__ import annotations

import numpy as np

from .errors import DatasetError
from .limits import ENV, human_bytes, limits


def over_limit(name: str, declared: str, key: str, unit: str) -> DatasetError:
    """'x.npz declares 9 GiB of ...; the limit is 1 GiB per file (SEQLENS_MAX_DECODE_BYTES).'"""
    value = getattr(limits(), key)
    shown = human_bytes(value) if key.endswith("bytes") else f"{value:,}"
    return DatasetError(f"{name} declares {declared}; the limit is {shown} {unit} ({ENV[key]}).")


def check_rows(name: str, rows: int, what: str = "") -> None:
    if rows > limits().transitions:
        raise over_limit(name, f"{rows:,} steps{' of ' + what if what else ''}", "transitions", "steps per dataset")


def check_width(name: str, width: int, what: str) -> None:
    if width > limits().features:
        raise over_limit(name, f"{width:,} {what} features", "features", "features per step")


def check_obs_shape(name: str, shape: tuple) -> None:
    """A declared shaped observation's size per step against limits().obs_values (before anything is read)."""
    values = int(np.prod(shape[1:], dtype=object))
    if values > limits().obs_values:
        raise over_limit(name, f"observations of shape {'×'.join(map(str, shape[1:]))} ({values:,} values each)",
                         "obs_values", "values per observation")


def check_mapped(name: str, shape: tuple, itemsize: int, what: str) -> None:
    """Mapped bytes against limits().mapped_bytes: not decoded, but read from disk as they are used."""
    size = int(np.prod(shape, dtype=object)) * itemsize
    if size > limits().mapped_bytes:
        raise over_limit(name, f"{shape[0]:,} steps of {what} ({human_bytes(size)} to map)", "mapped_bytes",
                         "of mapped observations per file")


def check_mission_width(name: str, dtype: np.dtype, key: str) -> None:
    """A fixed-width string array's width against limits().mission_chars, from its dtype alone (nothing read)."""
    chars = dtype.itemsize // 4 if dtype.kind == "U" else dtype.itemsize
    if dtype.kind not in "US":
        raise DatasetError(f"{name}: {key} must be one string per step (fixed-width text), got dtype {dtype}.")
    cap = limits().mission_chars * (1 if dtype.kind == "U" else 4)   # a UTF-8 character is at most 4 bytes
    if chars > cap:
        raise over_limit(name, f"{key} strings {chars:,} {'characters' if dtype.kind == 'U' else 'bytes'} wide",
                         "mission_chars", "characters per mission")


MAP_HINT = {"npz": "images stored uncompressed (np.savez) are memory-mapped instead",
            "hdf5": "images stored contiguous and uncompressed are memory-mapped instead"}


def with_map_hint(err: DatasetError, layout: str) -> DatasetError:
    """A decode-budget refusal of shaped observations, told how the same images would be mapped instead."""
    text = str(err)
    if "SEQLENS_MAX_DECODE_BYTES" not in text:
        return err
    return DatasetError(f"{text.rstrip('.')}; {MAP_HINT[layout]}.")


class Budget:
    """Decoded bytes one file may still produce."""

    def __init__(self, name: str):
        self.name, self.limit, self.used = name, limits().decode_bytes, 0

    def spend(self, nbytes: int, what: str) -> None:
        """Count `nbytes` about to be decoded for `what` ('300,000,000 steps of observations')."""
        self.used += int(nbytes)
        if self.used > self.limit:
            total = "" if self.used == nbytes else f", {human_bytes(self.used)} for the file so far"
            raise over_limit(self.name, f"{what} ({human_bytes(nbytes)} decoded{total})", "decode_bytes", "per file")

    def spend_array(self, shape: tuple, itemsize: int, what: str) -> None:
        rows = f"{shape[0]:,} steps of {what}" if len(shape) else what
        self.spend(int(np.prod(shape, dtype=object)) * itemsize, rows)
