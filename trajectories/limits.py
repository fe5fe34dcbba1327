"""Documented limits on what one file may make seqlens allocate or keep (SECURITY.md lists them).

Each limit is read from its environment variable at call time (so a server, or a test, can change it
without a restart of the reader code), with the default below. Readers check *declared* sizes (npy
headers, zip directories, parquet metadata, HDF5 shapes, safetensors headers) against these before
allocating anything.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

GIB = 1 << 30
MIB = 1 << 20


@dataclass(frozen=True)
class Limits:
    decode_bytes: int = GIB              # decoded array bytes one file may produce
    transitions: int = 20_000_000        # steps in one dataset
    features: int = 65_536               # observation or action width
    actions: int = 4_096                 # discrete action count
    zip_entries: int = 50_000            # members of one zip
    json_bytes: int = 128 * MIB          # JSON text (decodes to ~10x its size in Python objects)
    hdf5_objects: int = 200_000          # groups + datasets walked in one HDF5 file
    agent_params: int = 1 << 28          # parameters one agent may have (1 GiB of float32)
    session_uploads: int = 8             # uploads (datasets + agents) one browser session keeps
    session_upload_bytes: int = 2 * GIB  # their decoded bytes
    figure_cache_bytes: int = 256 * MIB  # the figure cache shared by all sessions of a server
    embedding_cache_bytes: int = 512 * MIB  # the on-disk embedding cache
    live_games: int = 8                  # live games (an environment + a thread each) the whole server plays at once
    live_game_bytes: int = GIB           # the memory those games hold together (measured as each game is made)
    heavy_analyses: int = 2              # uncached analyses computed at once by the whole server (the one cache)
    walk_entries: int = 100_000          # files and folders listed in one directory walk (trajectories/walk.py)
    walk_depth: int = 8                  # folders deep one directory walk goes
    mapped_bytes: int = 16 * GIB         # observation bytes one file may memory-map (read from disk on use, not decoded)
    obs_values: int = 1 << 22            # values in one shaped observation (H*W*C, S*H*W): 2048x2048 gray at most
    missions: int = 65_536               # distinct mission strings in one dataset (MiniGrid dict observations)
    mission_chars: int = 1_024           # characters in one mission string (checked before it is decoded)
    chunk_bytes: int = 64 * MIB          # decoded bytes of one HDF5 chunk of a lazily read image array


ENV = {
    "decode_bytes": "SEQLENS_MAX_DECODE_BYTES",
    "transitions": "SEQLENS_MAX_TRANSITIONS",
    "features": "SEQLENS_MAX_FEATURES",
    "actions": "SEQLENS_MAX_ACTIONS",
    "zip_entries": "SEQLENS_MAX_ZIP_ENTRIES",
    "json_bytes": "SEQLENS_MAX_JSON_BYTES",
    "hdf5_objects": "SEQLENS_MAX_HDF5_OBJECTS",
    "agent_params": "SEQLENS_MAX_AGENT_PARAMS",
    "session_uploads": "SEQLENS_SESSION_UPLOADS",
    "session_upload_bytes": "SEQLENS_SESSION_UPLOAD_BYTES",
    "figure_cache_bytes": "SEQLENS_FIGURE_CACHE_BYTES",
    "embedding_cache_bytes": "SEQLENS_EMBEDDING_CACHE_BYTES",
    "live_games": "SEQLENS_MAX_LIVE_GAMES",
    "live_game_bytes": "SEQLENS_MAX_LIVE_GAME_BYTES",
    "heavy_analyses": "SEQLENS_MAX_HEAVY_ANALYSES",
    "walk_entries": "SEQLENS_MAX_WALK_ENTRIES",
    "walk_depth": "SEQLENS_MAX_WALK_DEPTH",
    "mapped_bytes": "SEQLENS_MAX_MAPPED_BYTES",
    "obs_values": "SEQLENS_MAX_OBS_VALUES",
    "missions": "SEQLENS_MAX_MISSIONS",
    "mission_chars": "SEQLENS_MAX_MISSION_CHARS",
    "chunk_bytes": "SEQLENS_MAX_CHUNK_BYTES",
}


def limits() -> Limits:
    """The limits in force: defaults, overridden by positive integers in the environment."""
    out = {}
    for key, var in ENV.items():
        raw = os.environ.get(var)
        if raw:
            try:
                value = int(float(raw))
            except ValueError:
                continue   # a malformed setting keeps the default rather than disabling the limit
            if value > 0:
                out[key] = value
    return Limits(**out)


def human_bytes(n: float) -> str:
    for unit, size in (("GiB", GIB), ("MiB", MIB), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{int(n)} bytes"
