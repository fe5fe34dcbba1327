"""`cli.py bench --hostile`: what refusing each hostile file costs (wall time and peak memory).

Files come from bench/hostile_data.py and bench/hostile_agents.py (made by hand, as the tests use them).
Each is refused once to warm imports, then timed; memory is tracemalloc's peak (numpy and Python
allocations; a file that got past the size checks would show its decoded size here) and, in a fresh
process per file, the growth of peak RSS from after the imports to after the refusal (which also sees
torch's, Arrow's and HDF5's own allocations).
"""
from __future__ import annotations

import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path


def _refuse(kind: str, path: Path) -> str:
    """The sentence the user gets ('' if the file was accepted)."""
    if kind == "data":
        from trajectories import DatasetError, load_dataset

        try:
            load_dataset(path)
        except DatasetError as e:
            return str(e)
        return ""
    from models import load_agent
    from models.errors import AgentError

    try:
        load_agent(path)
    except AgentError as e:
        return str(e)
    return ""


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


_FRESH = """
import sys
from bench.hostile import _refuse, _rss_mb
import models, models.checkpoint, trajectories, h5py, pyarrow.parquet, pandas   # imports are not the refusal's
before = _rss_mb()
_refuse(sys.argv[1], sys.argv[2])
print(round(_rss_mb() - before, 1))
"""


def _rss_growth_mb(kind: str, path: Path) -> float:
    root = Path(__file__).resolve().parent.parent
    out = subprocess.run([sys.executable, "-c", _FRESH, kind, str(path)], cwd=root, capture_output=True, text=True)
    try:
        return float(out.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return float("nan")


def run_hostile(verbose: bool = True, quick: bool = False) -> list[dict]:
    """quick: skip the fresh process per file (RSS growth is then None)."""
    from bench.hostile_agents import hostile_agent_files
    from bench.hostile_data import hostile_dataset_files

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        files = [("data", h) for h in hostile_dataset_files(Path(tmp) / "data")] + \
                [("agent", h) for h in hostile_agent_files(Path(tmp) / "agents")]
        for kind, h in files:
            _refuse(kind, h["path"])   # warm: imports and first-call costs are not the refusal's
            tracemalloc.start()
            t0 = time.perf_counter()
            sentence = _refuse(kind, h["path"])
            seconds = time.perf_counter() - t0
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            res = {"name": h["name"], "kind": kind, "file_bytes": _size(Path(h["path"])), "seconds": round(seconds, 4),
                   "peak_mb": round(peak / 2**20, 2), "rss_growth_mb": None if quick else _rss_growth_mb(kind, Path(h["path"])),
                   "refused": bool(sentence), "sentence": sentence}
            results.append(res)
            if verbose:
                print(f"{kind:<5} {h['name']:<30} {res['file_bytes']:>9,} B  {seconds * 1000:7.1f} ms  "
                      f"peak {res['peak_mb']:6.2f} MB  rss +{res['rss_growth_mb']} MB  {sentence[:90]}", flush=True)
    return results


def _size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.is_dir() else path.stat().st_size
