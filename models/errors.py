"""Agent errors and path sniffing, importable without torch (the CLI uses them before deciding)."""
from __future__ import annotations

import zipfile
from pathlib import Path, PurePosixPath

PICKLE_SUFFIXES = {".pt", ".pth", ".pkl", ".pickle", ".bin", ".ckpt", ".joblib"}


class AgentError(ValueError):
    """A checkpoint that cannot be used, or a mismatch with a dataset; `str(err)` is one sentence."""


def is_agent_path(path) -> bool:
    """Does this path look like an agent rather than a dataset (for `cli.py inspect`)?"""
    path = Path(path)
    if path.is_dir():
        return (path / "config.json").is_file()
    if path.suffix.lower() in PICKLE_SUFFIXES:
        return True
    if path.suffix.lower() == ".zip":
        try:
            with zipfile.ZipFile(path) as zf:
                return any(PurePosixPath(n).name == "config.json" for n in zf.namelist())
        except (zipfile.BadZipFile, OSError):
            return False
    return False
