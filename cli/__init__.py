"""seqlens command line: inspect, convert, make-data, make-samples, train, evaluate, export, reproduce, register,
findings-table, bench.

Run as `python cli.py CMD ...` (cli.py at the repository root is the entry point) or `python -m cli CMD ...`.
One module per group of commands, each holding its commands' handlers and, beside each, its options
(`register(sub)` adds them to the parser):
- data.py        inspect, convert, make-data, make-samples
- agents.py      train, evaluate, make-agents, convert-agent
- figures.py     export (the work: analysis/publish/headless.py)
- research.py    reproduce (the work: analysis/research/pipeline.py), register (analysis/research/registration.py),
                 findings-table (analysis/research/readme_table.py)
- benchmarks.py  bench (the code: bench/)
- _common.py     what they share: one-line parser errors, --json (strict JSON: json_ready) and exit code 2

Every command takes --json where it prints results; errors are one line on stderr and exit code 2.
"""
from __future__ import annotations

import sys

from cli import agents, benchmarks, data, figures, research
from cli._common import (ROOT, UserError, _parse_pairs, _parse_targets, _Parser, _text_histogram, _with_env,
                         json_ready, run)
from cli.agents import _result_line, _train_recipe, cmd_convert_agent, cmd_evaluate, cmd_make_agents, cmd_train
from cli.benchmarks import cmd_bench
from cli.data import cmd_convert, cmd_inspect, cmd_make_data, cmd_make_samples
from cli.figures import cmd_export
from cli.research import _agent_in_env, _reproduce_envs, _reproduce_pieces, cmd_reproduce

# the subcommands in the order --help lists them, and the module that holds each
COMMANDS = (("inspect", data), ("convert", data), ("convert-agent", agents), ("make-data", data), ("train", agents),
            ("evaluate", agents), ("make-samples", data), ("make-agents", agents), ("export", figures),
            ("reproduce", research), ("register", research), ("findings-table", research),
            ("bench", benchmarks))


def build_parser():
    p = _Parser(prog="cli.py", description="seqlens: look inside sequence-model RL agents.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name, module in COMMANDS:
        module.register(sub, [name])
    return p


def main(argv=None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted.", file=sys.stderr)
        return 2
    except SystemExit as e:  # --help
        return int(e.code or 0)
    return run(args.func, args)


__all__ = ["ROOT", "UserError", "build_parser", "main", "json_ready", "run", "cmd_inspect", "cmd_convert",
           "cmd_convert_agent", "cmd_make_data", "cmd_make_samples", "cmd_train", "cmd_evaluate", "cmd_make_agents",
           "cmd_export", "cmd_reproduce", "cmd_bench", "_parse_pairs", "_parse_targets", "_with_env", "_text_histogram",
           "_result_line", "_train_recipe", "_reproduce_envs", "_agent_in_env", "_reproduce_pieces"]
