"""`cli.py bench --json` has the keys of DESIGN.md and both sides agree (sizes shrunk with --quick)."""
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_bench_json_schema_and_same_results():
    res = subprocess.run([sys.executable, "cli.py", "bench", "--quick", "--json"], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    benches = json.loads(res.stdout)["benchmarks"]
    assert {b["name"] for b in benches} == {"read_npz_1m", "read_parquet_1m", "read_d4rl_hdf5_1m", "kv_cache_rollout", "tt_beam_kv_cache",
                                            "rtg_sweep", "attention_dataset", "export_batch", "umap_20k"}
    for b in benches:
        assert {"name", "baseline_s", "ours_s", "ratio", "same_results"} <= set(b)
        assert b["same_results"] is True
        assert b["ours_s"] > 0 and b["baseline_s"] > 0
