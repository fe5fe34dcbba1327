"""The shipped agents' facts, read from their config.json files without building a model: the README
table `make sample-agents` writes and the home page's agent list."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from safetensors import safe_open

from models.shipped import AGENT_DIR


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


def agent_rows(directory=AGENT_DIR) -> list[dict]:
    """One dict per agent directory: name, kind, env, data, K, params, size, training seconds, evaluation."""
    rows = []
    for d in sorted(Path(directory).iterdir()) if Path(directory).is_dir() else []:
        cfg_path = d / "config.json"
        if not cfg_path.is_file() or not (d / "model.safetensors").is_file():
            continue
        cfg = json.loads(cfg_path.read_text())
        evaluation = cfg.get("evaluation", {})
        results = evaluation.get("results")
        with safe_open(d / "model.safetensors", framework="np") as f:
            n_params = sum(int(np.prod(f.get_slice(k).get_shape())) for k in f.keys())
        rows.append({"agent": d.name, "kind": cfg["kind"], "environment": cfg.get("env_id") or "—",
                     "data": cfg.get("dataset", {}).get("name"), "K": cfg["context_length"], "params": n_params,
                     "size_mb": sum(p.stat().st_size for p in d.iterdir()) / 1e6,
                     "train_s": cfg.get("training", {}).get("seconds", ""),
                     "evaluation": _fmt_results(results, evaluation.get("prediction_error")),
                     "episodes": results[0]["episodes"] if results else "—"})
    return rows


def agents_table(directory=AGENT_DIR) -> str:
    lines = ["| agent | kind | data | K | params | size | train s | achieved return (target → mean [95% CI]) | episodes |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in agent_rows(directory):
        lines.append(f"| `{r['agent']}` | {r['kind']} | {r['data']} | {r['K']} | {r['params']:,} | {r['size_mb']:.2f} MB | "
                     f"{r['train_s']} | {r['evaluation']} | {r['episodes']} |")
    return "\n".join(lines) + "\n"
