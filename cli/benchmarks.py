"""Benchmarks: bench (each fast path against its naive twin; --hostile, --scale), the code in bench/."""
from __future__ import annotations

from cli._common import add_commands


def cmd_bench(args) -> dict:
    if args.hostile:
        from bench.hostile import run_hostile

        return {"hostile": run_hostile(verbose=not args.json, quick=args.quick)}
    if args.scale:
        from bench.scale import run_scale

        return {"benchmarks": run_scale(verbose=not args.json, quick=args.quick)}
    from bench import run_all

    results = run_all(only=args.only, quick=args.quick, verbose=not args.json)
    return {"benchmarks": results}


def _bench_options(s):
    s.add_argument("--only", help="run only benchmarks whose name contains this")
    s.add_argument("--quick", action="store_true", help="smaller sizes (for a smoke test)")
    s.add_argument("--hostile", action="store_true", help="time and peak memory of refusing each hostile file (SECURITY.md)")
    s.add_argument("--scale", action="store_true", help="every page on a 1M-transition D4RL-shaped file and an HF-hopper-size "
                   "agent, and the shipped agents on a fresh server: seconds and peak memory against the targets")


def register(sub, names=None) -> None:
    """Add this module's subcommands (all, or those in `names`) to `sub`."""
    commands = {
        "bench": (cmd_bench, "benchmarks: each fast path against its naive twin", _bench_options),
    }
    add_commands(sub, commands, names)
