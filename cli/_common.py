"""What every command shares: the one-line parser errors, --json output (strict JSON) and exit code 2 for a
sentence, and the small parsers of option values."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]


class UserError(Exception):
    """A problem with what the user asked for; printed as one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line instead of usage + message
        raise UserError(f"{self.prog}: {message} (see --help).")


def add_command(sub, name: str, handler: Callable, help: str, options: Callable[[argparse.ArgumentParser], None]):
    """One subcommand: its options (added by `options`), then --json, and `handler(args) -> dict` to run it."""
    s = sub.add_parser(name, help=help)
    options(s)
    s.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    s.set_defaults(func=handler)
    return s


def add_commands(sub, commands: dict, names=None) -> None:
    """A module's subcommands, {name: (handler, help, options)}: all of them, or those in `names`."""
    for name, (handler, help, options) in commands.items():
        if names is None or name in names:
            add_command(sub, name, handler, help, options)


def run(handler: Callable, args) -> int:
    """Run one command's handler: with --json its result is printed as one strict JSON object (json_ready,
    allow_nan=False); a UserError, AgentError or DatasetError is one line on stderr and exit code 2."""
    from models.errors import AgentError
    from trajectories.errors import DatasetError

    try:
        result = handler(args)
    except (UserError, DatasetError, AgentError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted.", file=sys.stderr)
        return 2
    except SystemExit as e:
        return int(e.code or 0)
    if args.json:
        json.dump(json_ready(result), sys.stdout, allow_nan=False)
        sys.stdout.write("\n")
    return 0


def sentences(*errors: type[Exception]):
    """A handler's decorator: the library's sentences (`errors`, e.g. ExportError) become UserErrors, so the
    command prints them as one line with exit code 2."""
    def wrap(handler):
        import functools

        @functools.wraps(handler)
        def handled(args):
            try:
                return handler(args)
            except errors as e:
                raise UserError(str(e)) from None
        return handled
    return wrap


def chosen(only: str | None, known, what: str) -> list[str]:
    """The names of `known` that `--only a,b` picks (all without it); none is a UserError naming what exists."""
    names = [n for n in known if not only or n in only.split(",")]
    if not names:
        raise UserError(f"no {what} matches --only {only}; expected some of {', '.join(known)}.")
    return names


def _parse_pairs(items, flag: str) -> dict:
    """Repeated KEY=VALUE options; values are JSON where they parse (numbers, lists, null), else strings."""
    from analysis.publish.headless import ExportError, parse_pairs

    try:
        return parse_pairs(items, flag)
    except ExportError as e:
        raise UserError(str(e)) from None


def _parse_targets(text: str) -> list[float]:
    import math

    try:
        targets = [float(t) for t in str(text).split(",") if t.strip()]
    except ValueError:
        targets = None
    if not targets or not all(math.isfinite(t) for t in targets):
        raise UserError(f"--target-returns expects comma-separated finite numbers, e.g. 100,300,500; got '{text}'.")
    return targets


def _with_env(agent, env: str | None, normalize_from: str | None = None, rtg_scale: float | None = None,
              raw_inputs: bool = False):
    """--env, --normalize-from, --raw-inputs and --rtg-scale applied to `agent` (models.env_choice.with_choices:
    the same variants, in the same order, as Home's choices); a contradiction or a choice the agent cannot take is
    a UserError."""
    from models.env_choice import with_choices
    from models.errors import AgentError

    try:
        return with_choices(agent, env, normalize_from, rtg_scale, raw_inputs)
    except AgentError as e:
        raise UserError(str(e)) from None


def _text_histogram(values, bins: int = 10, width: int = 40) -> str:
    import numpy as np

    counts, edges = np.histogram(values, bins=bins)
    top = max(int(counts.max()), 1)
    lines = ["  episode returns:"]
    for c, lo, hi in zip(counts, edges[:-1], edges[1:]):
        lines.append(f"    [{lo:9.4g}, {hi:9.4g})  {'#' * round(width * c / top):<{width}} {c}")
    return "\n".join(lines)


def json_ready(result: dict) -> dict:
    """`result` as strict JSON values: every NaN / Infinity (Python or numpy) becomes null, and a "nulls" entry
    maps each such field's path (e.g. "results[0].std_return") to why it is null. numpy scalars and arrays become
    numbers and lists; anything else JSON cannot hold becomes a number where float() takes it, else its text."""
    import math

    nulls = {}

    def clean(value, where: str):
        if isinstance(value, dict):
            return {(k if isinstance(k, (str, int, float, bool)) or k is None else str(k)): clean(v, f"{where}.{k}" if where else str(k))
                    for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [clean(v, f"{where}[{i}]") for i, v in enumerate(value)]
        if value is None or isinstance(value, (str, bool)):
            return value
        if isinstance(value, int):
            return value
        if hasattr(value, "tolist") and callable(value.tolist):   # numpy scalars and arrays, torch tensors
            return clean(value.tolist(), where)
        try:
            number = float(value)
        except (TypeError, ValueError):
            return str(value)
        if math.isfinite(number):
            return number
        nulls[where] = f"was {number!r}".replace("nan", "NaN").replace("inf", "Infinity") + ", which JSON cannot hold"
        return None

    out = clean(result, "")
    if nulls:
        out["nulls"] = nulls
    return out
