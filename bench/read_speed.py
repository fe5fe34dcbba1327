"""Reading 1,000,000 transitions (obs_dim 17, act_dim 6) into a Dataset, returns-to-go included.

Ours: load_dataset (+ the vectorised returns-to-go). Naive twin: what the Decision Transformer reference
code does — load, split into a list of per-episode arrays, and compute returns-to-go per episode with a
Python loop (its `discount_cumsum`). Each side runs in a fresh process so its peak memory can be read;
the memory target is a peak increase under 2x the raw arrays.
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.harness import row

ROOT = Path(__file__).resolve().parent.parent
N, OBS_DIM, ACT_DIM, EP_LEN = 1_000_000, 17, 6, 1000


def make_dataset(n: int):
    from trajectories import Dataset

    rng = np.random.default_rng(0)
    starts = np.arange(0, n, EP_LEN)
    term = np.zeros(n, bool)
    term[np.append(starts[1:], n) - 1] = True
    return Dataset(rng.normal(size=(n, OBS_DIM)).astype(np.float32), rng.uniform(-1, 1, (n, ACT_DIM)).astype(np.float32),
                   rng.normal(size=n).astype(np.float32), term, np.zeros(n, bool), starts, env_id="Bench-v0")


def raw_bytes(n: int) -> int:
    return n * (OBS_DIM * 4 + ACT_DIM * 4 + 4 + 1 + 1)


def _rss_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1])
    return 0


def _discount_cumsum(x):  # the DT reference implementation (gamma = 1)
    out = np.zeros_like(x)
    out[-1] = x[-1]
    for t in reversed(range(x.shape[0] - 1)):
        out[t] = x[t] + out[t + 1]
    return out


def _naive(fmt: str, path: str):
    if fmt == "parquet":
        import pandas as pd

        df = pd.read_parquet(path)
        episodes = [g for _, g in df.groupby("episode", sort=True)]
        rewards = [g["reward"].to_numpy() for g in episodes]
    elif fmt == "hdf5":
        import h5py

        with h5py.File(path) as f:
            data = {k: f[k][()] for k in ("observations", "actions", "rewards", "terminals", "timeouts")}
        ends = np.flatnonzero(data["terminals"] | data["timeouts"]) + 1
        rewards = np.split(data["rewards"], ends[:-1])
        episodes = [{k: v[s:e] for k, v in data.items()} for s, e in zip(np.r_[0, ends[:-1]], ends)]
    else:
        data = dict(np.load(path))
        starts = data["episode_starts"]
        ends = np.append(starts[1:], len(data["rewards"]))
        episodes = [{k: data[k][s:e] for k in ("observations", "actions", "rewards")} for s, e in zip(starts, ends)]
        rewards = [ep["rewards"] for ep in episodes]
    return np.concatenate([_discount_cumsum(r.astype(np.float64)) for r in rewards]).astype(np.float32)


def _child(side: str, fmt: str, path: str, out: str) -> None:
    sys.path.insert(0, str(ROOT))
    from trajectories import load_dataset

    # Warm up on a tiny file of the same format first, so the baseline already holds the library code
    # pages the first read maps in; the increase then measures what the data itself costs.
    warm = Path(out).with_name(f"warm{Path(path).suffix}")
    if not warm.exists():
        from trajectories import save_dataset

        save_dataset(make_dataset(2 * EP_LEN), warm)
    load_dataset(warm) if side == "ours" else _naive(fmt, str(warm))
    base = _rss_kb("VmRSS")
    t0 = time.perf_counter()
    if side == "ours":
        ds = load_dataset(path)
        rtg = ds.returns_to_go
    else:
        rtg = _naive(fmt, path)
    seconds = time.perf_counter() - t0
    np.save(out, rtg)
    print(json.dumps({"seconds": seconds, "peak_increase_bytes": (_rss_kb("VmHWM") - base) * 1024}))


def _run(side: str, fmt: str, path: Path, out: Path) -> dict:
    res = subprocess.run([sys.executable, "-m", "bench.read_speed", side, fmt, str(path), str(out)],
                         cwd=ROOT, capture_output=True, text=True, check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def _bench(fmt: str, ext: str, quick: bool) -> dict:
    from trajectories import save_dataset

    n = 50_000 if quick else N
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        path = tmp / f"bench{ext}"
        ds = make_dataset(n)
        if fmt == "npz":
            from trajectories.npz_format import write_npz

            write_npz(ds, path, compress=False)
        else:
            save_dataset(ds, path)
        del ds
        # best of three fresh processes per side: this machine's timing noise is larger than the effect
        repeats = 1 if quick else 3
        ours = min((_run("ours", fmt, path, tmp / "ours.npy") for _ in range(repeats)), key=lambda r: r["seconds"])
        naive = min((_run("naive", fmt, path, tmp / "naive.npy") for _ in range(repeats)), key=lambda r: r["seconds"])
        same = bool(np.allclose(np.load(tmp / "ours.npy"), np.load(tmp / "naive.npy"), rtol=1e-5, atol=1e-3))
    return row(naive["seconds"], ours["seconds"], same, ratio_digits=1, n_transitions=n,
               memory_x_raw=round(ours["peak_increase_bytes"] / raw_bytes(n), 2),
               naive_memory_x_raw=round(naive["peak_increase_bytes"] / raw_bytes(n), 2))


BENCHMARKS = {
    "read_npz_1m": lambda quick=False: _bench("npz", ".npz", quick),
    "read_parquet_1m": lambda quick=False: _bench("parquet", ".parquet", quick),
    "read_d4rl_hdf5_1m": lambda quick=False: _bench("hdf5", ".hdf5", quick),
}

if __name__ == "__main__":
    _child(*sys.argv[1:5])
