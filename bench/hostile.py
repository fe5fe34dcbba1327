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

import functools
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
    if kind == "param":
        return _param_refusal(path)
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


# figure parameters past their declared range (analysis/publish/catalog.RANGES): refused by catalog.make before any work
# (before issue 26, fps=1e-300 reached ffmpeg as `-r 0` and ended in a traceback)
HOSTILE_PARAMS = [
    ("fps-1e-300", "episode_video", {"fps": 1e-300}, "fps must be between 1 and 60"),
    ("fps-nan", "episode_video", {"fps": float("nan")}, "must be a finite number"),
    ("width-1e9", "episode_video", {"width": 10**9}, "width must be a whole number between 8 and 1920"),
    ("seed-negative", "rtg_sweep_returns", {"seed": -1}, "seed must be a whole number between 0 and 4294967295"),
    ("episode-1e12", "attention_map", {"episode": 10**12}, "episode 1000000000000 is out of range"),
    ("sweep-targets-300", "rtg_sweep_returns", {"targets": list(range(300))}, "list of 1 to 256 numbers"),
]


def hostile_param_files(directory) -> list[dict]:
    """Each HOSTILE_PARAMS case as a small JSON file (figure, params) for _refuse('param', path); drawn for the shipped
    cartpole-dt and cartpole.npz."""
    import json

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    out = []
    for name, figure, params, expect in HOSTILE_PARAMS:
        path = d / f"{name}.json"
        path.write_text(json.dumps({"figure": figure, "params": params}))   # NaN as JSON's NaN token, read back by json
        out.append({"name": name, "path": path, "expect": expect.lower(), "secret": None, "kind": "param"})
    return out


@functools.lru_cache(maxsize=1)
def _shipped_pair():
    """cartpole-dt and cartpole.npz, loaded once: their loading is not the refusal's cost."""
    from models import load_agent
    from models.shipped import shipped_agents
    from trajectories import load_dataset
    from trajectories.samples import sample_datasets

    return load_agent(shipped_agents()["cartpole-dt"]), load_dataset(sample_datasets()["cartpole"])


def _param_refusal(path) -> str:
    """catalog.make's sentence for the case ('' if it drew the figure: then the check let it through)."""
    import json

    from analysis.publish import catalog
    spec = json.loads(Path(path).read_text())
    agent, dataset = _shipped_pair()
    try:
        catalog.make(spec["figure"], agent, dataset, **spec["params"])
    except ValueError as e:
        return str(e)
    return ""


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


_FRESH = """
import sys
from bench.hostile import _refuse, _peak_mb, _shipped_pair
import models, models.checkpoint, trajectories, h5py, pyarrow.parquet, pandas   # imports are not the refusal's
import cli, yaml, models.convert, models.corl_import, models.hf_import, models.pt_reader, analysis.publish.catalog
if sys.argv[1] == "param":   # the shipped pair and the catalog's imports are not the refusal's
    _shipped_pair()
    analysis.publish.catalog.figures()
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
                [(h["kind"], h) for h in hostile_checkpoint_files(Path(tmp) / "checkpoints")] + \
                [(h["kind"], h) for h in hostile_param_files(Path(tmp) / "params")]
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
