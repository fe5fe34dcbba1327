"""The shipped agents (sample_data/agents), trained by `make sample-agents`: the one place that names their folder.
(The shipped datasets' folder is trajectories/samples.py's SAMPLE_DIR.)"""
from __future__ import annotations

from pathlib import Path

AGENT_DIR = Path(__file__).resolve().parent.parent / "sample_data" / "agents"


def shipped_agents(directory: Path = AGENT_DIR) -> dict[str, Path]:
    """Name -> folder of every shipped agent (a folder with a config.json), sorted by name."""
    directory = Path(directory)
    if not directory.is_dir():
        return {}
    return {d.name: d for d in sorted(directory.iterdir()) if (d / "config.json").is_file()}
