"""Figures: export (one figure headless, analysis/publish/headless.py)."""
from __future__ import annotations

import sys

from analysis.publish.headless import ExportError
from cli._common import add_commands, sentences
from cli.agents import add_input_options


@sentences(ExportError)
def cmd_export(args) -> dict:
    import torch

    from analysis.publish.headless import export_figure, figure_list

    torch.set_num_threads(args.threads)
    if args.list:
        figures = figure_list()
        if not args.json:
            for e in figures:
                print(f"  {e['name']:<24} {'agent + data' if e['needs_agent'] else 'data'}  {e['description']}")
        return {"figures": figures}
    r = export_figure(args.figure, args.out, agent=args.agent, data=args.data, fmt=args.format,
                      params=args.param or [], env=args.env, normalize_from=args.normalize_from,
                      rtg_scale=args.rtg_scale, raw_inputs=args.raw_inputs, compare=args.compare,
                      note=lambda text: print(f"note: {text}", file=sys.stderr))
    if not args.json:
        print(f"wrote {r['out']} ({r['figure']}, {r['format']}" + (
            f", {r['frames']} frames of {r['width']} x {r['height']}, {r['bytes'] / 1e6:.2f} MB)" if "frames" in r
            else ")"))
    return r


def _export_options(s):
    s.add_argument("--figure", help="figure name (see --list)")
    s.add_argument("--agent", help="agent checkpoint directory or zip")
    s.add_argument("--data", help="dataset (default: the shipped dataset the agent was trained on; episode_video: a "
                   "rollout of the agent in its environment)")
    s.add_argument("--format", help="png, svg, pdf, html, csv or zip; gif or mp4 for episode_video (default: from --out)")
    s.add_argument("--out", help="output file")
    s.add_argument("--param", action="append", metavar="KEY=VALUE", help="figure parameter, e.g. episode=3 (repeatable)")
    add_input_options(s, "the environment the agent acts in, for agents that name none (gymnasium id or D4RL name)")
    s.add_argument("--compare", metavar="AGENT", help="a second agent beside the first on the same data (checkpoint directory "
                   "or zip, or 'randomized': the first agent with re-initialised weights): side by side, with B − A where "
                   "a difference means something")
    s.add_argument("--list", action="store_true", help="list the figures and exit")
    s.add_argument("--threads", type=int, default=1)


def register(sub, names=None) -> None:
    """Add this module's subcommands (all, or those in `names`) to `sub`."""
    commands = {
        "export": (cmd_export, "make one figure headless (png, svg, pdf, html, csv, or a zip bundle; gif or mp4 "
                   "for episode_video)", _export_options),
    }
    add_commands(sub, commands, names)
