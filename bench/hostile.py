"""`cli.py bench --hostile`: what refusing each hostile file costs (wall time and peak memory).

Files come from bench/hostile_data.py, bench/hostile_agents.py, bench/hostile_folders.py (dataset folders with
links, cycles, FIFOs, depth and entry floods; a CSV holding a secret) and bench/hostile_checkpoints.py (CORL / HF
pickles for `cli.py convert-agent`: allocations through torch's allow-list, stride-0 and overlapping views, meta,
sparse and attribute-setting tensors, padded or out-of-range config.yaml), all made by hand as the tests use them.
Each is refused once to warm imports, then timed; memory is tracemalloc's peak (numpy and Python
allocations; a file that got past the size checks would show its decoded size here) and, in a fresh
process per file, the growth of peak RSS from after the imports to after the refusal (which also sees
torch's, Arrow's and HDF5's own allocations; VmHWM reset after the imports, see _peak_mb).
"""
from __future__ import annotations

import os
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path


def _refuse(kind: str, path: Path) -> str:
    """The sentence the user gets ('' if the file was accepted)."""
    if kind == "convert":
        from bench.hostile_checkpoints import convert_refusal

        return convert_refusal(path)
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
from bench.hostile import _refuse, _peak_mb
import models, models.checkpoint, trajectories, h5py, pyarrow.parquet, pandas   # imports are not the refusal's
import cli, yaml, models.corl_import, models.hf_import, models.pt_reader
before = _peak_mb(reset=True)
_refuse(sys.argv[1], sys.argv[2])
print(round(_peak_mb() - before, 1))
"""


def _peak_mb(reset: bool = False) -> float:
    """This process's peak RSS (VmHWM) in MB; reset=True first resets it to the current RSS (Linux's clear_refs '5').
    Not ru_maxrss: a child's starts at its parent's peak across fork and exec (a child reported 1,034 MB when its
    own peak was 8.7 MB), which hid growth whenever the bench process had peaked higher."""
    status = Path("/proc/self/status")
    if not status.exists():   # not Linux: ru_maxrss (an upper bound that includes the parent's peak)
        return _rss_mb()
    if reset:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    for line in status.read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return _rss_mb()


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
    from bench.hostile_checkpoints import hostile_checkpoint_files
    from bench.hostile_data import hostile_dataset_files
    from bench.hostile_folders import hostile_folder_files

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        files = [("data", h) for h in hostile_dataset_files(Path(tmp) / "data")] + \
                [("agent", h) for h in hostile_agent_files(Path(tmp) / "agents")] + \
                [(h["kind"], h) for h in hostile_folder_files(Path(tmp) / "folders")] + \
                [(h["kind"], h) for h in hostile_checkpoint_files(Path(tmp) / "checkpoints")]
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
                   "refused": bool(sentence), "sentence": sentence,
                   "secret_shown": bool(h.get("secret")) and _shows(sentence, h["secret"])}
            results.append(res)
            if verbose:
                print(f"{kind:<7} {h['name']:<30} {res['file_bytes']:>9,} B  {seconds * 1000:7.1f} ms  "
                      f"peak {res['peak_mb']:6.2f} MB  rss +{res['rss_growth_mb']} MB  {sentence[:90]}", flush=True)
    return results


def _shows(sentence: str, secret) -> bool:
    text = secret.decode("utf-8", "replace") if isinstance(secret, bytes) else str(secret)
    return text in sentence


def _size(path: Path) -> int:
    """Bytes of the file, or of the plain files under a folder (links are not followed: some point at /usr)."""
    if not path.is_dir():
        return path.lstat().st_size
    total = 0
    for root, _, names in os.walk(path):   # os.walk does not descend into linked folders
        for n in names:
            f = Path(root) / n
            if f.is_file() and not f.is_symlink():
                total += f.stat().st_size
    return total
