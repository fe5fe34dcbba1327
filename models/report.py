"""The shipped agents' table (Markdown), read from their config.json files: what `make sample-agents` writes."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from safetensors import safe_open


def _fmt_results(results: list[dict] | None, pred: dict | None = None) -> str:
    if pred:
        err = dict(zip(pred["horizon"], pred["mean_l2"]))
        return f"open-loop state error (mean L2) {err[1]:.3g} at 1 step, {err[max(err)]:.3g} at {max(err)} steps"
    if not results:
        return "—"
    parts = []
    for r in results:
        ci = f"[{r['ci_low']:.4g}, {r['ci_high']:.4g}]"
        head = "" if r["target_return"] is None else f"{r['target_return']:g} → "
        parts.append(f"{head}{r['mean_return']:.4g} {ci}")
    return "; ".join(parts)


def agents_table(directory) -> str:
    rows = ["| agent | kind | data | K | params | size | train s | achieved return (target → mean [95% CI]) | episodes |",
            "|---|---|---|---|---|---|---|---|---|"]
    for d in sorted(Path(directory).iterdir()):
        cfg_path = d / "config.json"
        if not cfg_path.is_file():
            continue
        cfg = json.loads(cfg_path.read_text())
        size = sum(p.stat().st_size for p in d.iterdir()) / 1e6
        results = cfg.get("evaluation", {}).get("results")
        pred = cfg.get("evaluation", {}).get("prediction_error")
        with safe_open(d / "model.safetensors", framework="np") as f:
            n_params = sum(int(np.prod(f.get_slice(k).get_shape())) for k in f.keys())
        episodes = results[0]["episodes"] if results else "—"
        rows.append(f"| `{d.name}` | {cfg['kind']} | {cfg['dataset'].get('name')} | {cfg['context_length']} | {n_params:,} | "
                    f"{size:.2f} MB | {cfg['training'].get('seconds', '')} | {_fmt_results(results, pred)} | {episodes} |")
    return "\n".join(rows) + "\n"
