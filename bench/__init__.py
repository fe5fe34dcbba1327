"""Benchmarks behind `python cli.py bench`: each fast path against its naive twin, same results, as a ratio."""
from __future__ import annotations

import importlib

MODULES = ["bench.read_speed", "bench.rollout_speed", "bench.tt_speed", "bench.sweep_speed", "bench.attention_speed",
           "bench.export_speed", "bench.umap_speed", "bench.patching_speed", "bench.video_speed",
           "bench.player_speed", "bench.spatial_speed", "bench.atari_rollout_speed"]


def run_all(only: str | None = None, quick: bool = False, verbose: bool = True) -> list[dict]:
    results = []
    for mod_name in MODULES:
        mod = importlib.import_module(mod_name)
        for name, fn in mod.BENCHMARKS.items():
            if only and only not in name:
                continue
            res = {"name": name, **fn(quick=quick)}
            results.append(res)
            if verbose:
                extra = ", ".join(f"{k}={v}" for k, v in res.items() if k not in {"name", "baseline_s", "ours_s", "ratio", "same_results"})
                print(f"{name:<22} ours {res['ours_s']:7.3f}s  naive {res['baseline_s']:7.3f}s  "
                      f"x{res['ratio']:<7.1f} same={res['same_results']}  {extra}", flush=True)
    return results
