"""seqlens command line: inspect, convert, make-data, bench.

Every command takes --json where it prints results; errors are one line on stderr and exit code 2.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))


class UserError(Exception):
    """A problem with what the user asked for; printed as one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line instead of usage + message
        raise UserError(f"{self.prog}: {message} (see --help).")


def cmd_inspect(args) -> dict:
    from trajectories import load_dataset

    ds = load_dataset(args.path)
    out = {"format": ds.metadata.get("format"), **ds.summary(), "obs_names": ds.obs_names,
           "act_names": ds.act_names, "source": str(args.path)}
    if not args.json:
        print(f"{args.path}  ({out['format']})")
        width = max(len(k) for k in out)
        for key in ("env_id", "n_episodes", "n_transitions", "obs_dim", "act_dim", "n_actions", "length_mean",
                    "return_min", "return_mean", "return_max"):
            val = out[key]
            print(f"  {key:<{width}}  {val:.4g}" if isinstance(val, float) else f"  {key:<{width}}  {val}")
        print(f"  {'observations':<{width}}  {', '.join(ds.obs_names)}")
        print(_text_histogram(ds.episode_returns))
    if args.histogram:
        from analysis.export import write_figure
        from analysis.figures import returns_histogram

        title = f"Episode returns — {Path(args.path).stem} ({ds.n_episodes} episodes, {ds.env_id or 'unknown env'})"
        try:
            out["histogram"] = str(write_figure(returns_histogram(ds.episode_returns, title), args.histogram))
        except ValueError as e:
            raise UserError(str(e)) from None
    return out


def _text_histogram(values, bins: int = 10, width: int = 40) -> str:
    import numpy as np

    counts, edges = np.histogram(values, bins=bins)
    top = max(int(counts.max()), 1)
    lines = ["  episode returns:"]
    for c, lo, hi in zip(counts, edges[:-1], edges[1:]):
        lines.append(f"    [{lo:9.4g}, {hi:9.4g})  {'#' * round(width * c / top):<{width}} {c}")
    return "\n".join(lines)


def cmd_convert(args) -> dict:
    from trajectories import load_dataset, save_dataset
    from trajectories.io import WRITERS

    out = Path(args.out)
    if out.suffix.lower() not in WRITERS:
        raise UserError(f"cannot write {out.name}: expected an output ending in {', '.join(WRITERS)}.")
    if out.exists() and not args.force:
        raise UserError(f"{out} already exists; pass --force to overwrite it.")
    ds = load_dataset(args.input)
    save_dataset(ds, out)
    result = {"input": str(args.input), "output": str(out), "n_episodes": ds.n_episodes, "n_transitions": ds.n_transitions}
    if not args.json:
        print(f"wrote {out} ({ds.n_episodes} episodes, {ds.n_transitions} steps)")
    return result


def cmd_make_data(args) -> dict:
    from envs import resolve_env_id
    from envs.behaviour import collect
    from trajectories import save_dataset
    from trajectories.io import WRITERS

    if args.episodes < 1:
        raise UserError(f"--episodes must be at least 1, got {args.episodes}.")
    out = Path(args.out)
    if out.suffix.lower() not in WRITERS:
        raise UserError(f"cannot write {out.name}: expected an output ending in {', '.join(WRITERS)}.")
    try:
        resolve_env_id(args.env)
    except ValueError as e:
        raise UserError(str(e)) from None
    ds = collect(args.env, args.episodes, seed=args.seed, progress=not args.json)
    save_dataset(ds, out)
    result = {"output": str(out), "env_id": ds.env_id, **{k: v for k, v in ds.summary().items() if k != "env_id"}}
    if not args.json:
        print(f"wrote {out}: {ds.n_episodes} episodes, {ds.n_transitions} steps, returns "
              f"{result['return_min']:.4g} .. {result['return_max']:.4g} (mean {result['return_mean']:.4g})")
        print(_text_histogram(ds.episode_returns))
    return result


def cmd_make_samples(args) -> dict:
    """Regenerate every shipped dataset (deterministic by seed): what `make sample-data` runs."""
    from envs.behaviour import SAMPLE_DATASETS, collect
    from trajectories import save_dataset

    out_dir = Path(args.out_dir)
    written = []
    for alias, (env_id, episodes, seed) in SAMPLE_DATASETS.items():
        ds = collect(env_id, episodes, seed=seed, progress=not args.json)
        path = out_dir / f"{alias}.npz"
        save_dataset(ds, path)
        written.append({"name": alias, "path": str(path), "bytes": path.stat().st_size, "n_episodes": ds.n_episodes,
                        "n_transitions": ds.n_transitions, "return_min": float(ds.episode_returns.min()),
                        "return_max": float(ds.episode_returns.max())})
        if not args.json:
            print(f"wrote {path}: {ds.n_episodes} episodes, {ds.n_transitions} steps, {path.stat().st_size / 1e6:.2f} MB")
    return {"datasets": written}


def cmd_bench(args) -> dict:
    from bench import run_all

    results = run_all(only=args.only, quick=args.quick, verbose=not args.json)
    return {"benchmarks": results}


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="cli.py", description="seqlens: look inside sequence-model RL agents.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    s = sub.add_parser("inspect", help="summarise a dataset file or directory")
    s.add_argument("path")
    s.add_argument("--histogram", metavar="FIG", help="also write the returns histogram (.png, .svg, .pdf or .html)")
    s.set_defaults(func=cmd_inspect)

    s = sub.add_parser("convert", help="convert a dataset between formats (by file extension)")
    s.add_argument("input")
    s.add_argument("out")
    s.add_argument("--force", action="store_true", help="overwrite OUT if it exists")
    s.set_defaults(func=cmd_convert)

    s = sub.add_parser("make-data", help="generate a behaviour dataset with a scripted policy")
    s.add_argument("--env", required=True, help="cartpole, pendulum, masked-cartpole, masked-pendulum, keydoor (or a gymnasium id)")
    s.add_argument("--episodes", type=int, required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--seed", type=int, default=0)
    s.set_defaults(func=cmd_make_data)

    s = sub.add_parser("make-samples", help="regenerate the shipped sample datasets")
    s.add_argument("--out-dir", default=str(ROOT / "sample_data" / "datasets"))
    s.set_defaults(func=cmd_make_samples)

    s = sub.add_parser("bench", help="benchmarks: each fast path against its naive twin")
    s.add_argument("--only", help="run only benchmarks whose name contains this")
    s.add_argument("--quick", action="store_true", help="smaller sizes (for a smoke test)")
    s.set_defaults(func=cmd_bench)

    for sp in sub.choices.values():
        sp.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    return p


def main(argv=None) -> int:
    from trajectories.errors import DatasetError

    try:
        args = build_parser().parse_args(argv)
        result = args.func(args)
    except (UserError, DatasetError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted.", file=sys.stderr)
        return 2
    except SystemExit as e:  # --help
        return int(e.code or 0)
    if args.json:
        json.dump(result, sys.stdout, default=float)
        sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
