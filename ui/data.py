"""Cached dataset loading and the session's dataset selection (shipped, local files opened in place, or uploaded)."""
from __future__ import annotations

import tempfile
from pathlib import Path

import streamlit as st

from analysis.core.identity import stamp_dataset
from trajectories import Dataset, DatasetError, load_dataset
from trajectories.samples import sample_datasets
from ui import local as local_files
from ui.session import shared_with_spinner

UPLOAD_LIMIT_MB = 200  # same as server.maxUploadSize in .streamlit/config.toml
UPLOAD_TYPES = ["npz", "parquet", "csv", "json", "jsonl", "hdf5", "h5", "zip"]


SHIPPED_KEPT = 32   # shipped datasets loaded (there are about 10)


def load_sample(path: str, mtime: float) -> Dataset:  # mtime in the key: a regenerated file reloads
    """A shipped dataset, a shared object of the one cache: read once per process per (path, mtime), never changed."""
    return shared_with_spinner("shipped_dataset", (path, mtime), lambda: stamp_dataset(load_dataset(path)),
                               SHIPPED_KEPT, "Loading dataset…")


# the default agent's (ui.agents.DEFAULT_AGENT) data; names sort "breakout" (issue 23's Atari example) first
DEFAULT_DATASET = "cartpole"


def shipped() -> dict[str, Dataset]:
    return {name: load_sample(str(p), p.stat().st_mtime) for name, p in sample_datasets().items()}


def uploaded() -> dict[str, Dataset]:
    """This session's uploads (per browser session: other sessions never see them)."""
    return st.session_state.setdefault("uploaded_datasets", {})


def local() -> dict[str, Dataset]:
    """Files opened in place: the command line's (every session), then this session's typed paths."""
    return {name: o.obj for name, o in local_files.entries("data").items()}


def all_datasets() -> dict[str, Dataset]:
    return {**shipped(), **local(), **{f"upload: {k}": v for k, v in uploaded().items()}}


def read_upload(file) -> Dataset:
    """Parse an uploaded file; raises DatasetError with one sentence on any problem."""
    if file.size > UPLOAD_LIMIT_MB * 2**20:
        raise DatasetError(f"{file.name} is {file.size / 2**20:.0f} MB; uploads are limited to {UPLOAD_LIMIT_MB} MB.")
    suffix = Path(file.name).suffix.lower()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"upload{suffix}"
        path.write_bytes(file.getvalue())
        return stamp_dataset(load_dataset(path, display_name=file.name))


def current_dataset_name() -> str | None:
    names = list(all_datasets())
    chosen = st.session_state.get("dataset")
    if chosen not in names:
        chosen = st.query_params.get("dataset")
    if chosen not in names:
        chosen = local_files.first_from_args("data") or (DEFAULT_DATASET if DEFAULT_DATASET in names
                                                          else (names[0] if names else None))
    return chosen


def dataset_path(name: str) -> str | None:
    """Where a shipped or local dataset lives (for bundle manifests); uploads have no path to remake from."""
    if (local_path := local_files.path_of("data", name)) is not None:
        return str(local_path)
    p = sample_datasets().get(name)
    return str(p.relative_to(Path(__file__).resolve().parent.parent)) if p is not None else None
