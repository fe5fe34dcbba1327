"""Research: reproduce (the papers' findings as a report, analysis/research/pipeline.py)."""
from __future__ import annotations

import sys
from pathlib import Path

from analysis.research.findings import FindingsError
from analysis.research.pipeline import ReproduceError, ReproduceOptions
from cli._common import UserError, add_commands, sentences


def options_of(args) -> ReproduceOptions:
    """reproduce's parsed options as the library's request."""
    return ReproduceOptions(out=args.out, retrain=args.retrain, seeds=args.seeds, seed_list=args.seed_list,
                            agents=args.agents, train_only=args.train_only, from_agents=args.from_agents, ray=args.ray,
                            steps_scale=args.steps_scale, seed=args.seed, quick=args.quick, env=args.env,
                            progress=not args.json)


@sentences(ReproduceError, FindingsError)
def cmd_reproduce(args) -> dict:
    import torch

    from analysis.research.pipeline import reproduce_report

    torch.set_num_threads(args.threads)
    log = (lambda m: None) if args.json else (lambda m: print(m, file=sys.stderr, flush=True))
    r = reproduce_report(options_of(args), log=log)
    if args.train_only:
        if not args.json:
            print(f"trained {len(r['trained'])} piece(s) in {r['seconds']:.0f} s: checkpoints in "
                  f"{Path(args.out) / 'agents'}/<agent>/seed<k>/, logs in {Path(args.out) / 'logs'}/")
        return r
    findings, runs = r["findings"], r["runs"]
    if not args.json:
        for f in findings:
            print(f"{f.id:<20} {f.verdict}: {f.measured}")
        print(f"report: {r['paths']['report_md']} and {r['paths']['report_html']} ({r['seconds']:.0f} s)")
    return {"findings": [f.to_json() for f in findings],
            "per_seed": [[f.to_json() for f in run] for run in runs] if len(runs) > 1 else None,
            **r["paths"], "seconds": r["seconds"]}


# the library's checks under their earlier names (tests and scripts call them): a sentence is a UserError
def _reproduce_envs(items, names) -> dict[str, str]:
    from analysis.research.pipeline import env_choices

    try:
        return env_choices(items, names)
    except ReproduceError as e:
        raise UserError(str(e)) from None


def _agent_in_env(name: str, agent, chosen: dict):
    from analysis.research.pipeline import agent_in_env

    try:
        return agent_in_env(name, agent, chosen)
    except ReproduceError as e:
        raise UserError(str(e)) from None


def _reproduce_pieces(args):
    from analysis.research.pipeline import reproduce_pieces

    try:
        return reproduce_pieces(options_of(args))
    except ReproduceError as e:
        raise UserError(str(e)) from None


def _reproduce_options(s):
    s.add_argument("--out", default="report", help="report directory (default: report)")
    s.add_argument("--retrain", action="store_true", help="retrain the agents from their recipes instead of loading them")
    s.add_argument("--seeds", type=int, default=1, help="with --retrain or --from-agents: seeds 0..N-1 (today's recipes: about "
                   "an hour of one core per seed)")
    s.add_argument("--seed-list", metavar="K,K,...", help="these training seeds instead of 0..N-1 (e.g. 3,4: a piece of a "
                   "5-seed run)")
    s.add_argument("--agents", metavar="A,B,...", help="with --retrain: train only these recipes (models/recipes.py); the "
                   "findings take the others from --from-agents")
    s.add_argument("--train-only", action="store_true", help="with --retrain: save the checkpoints in "
                   "OUT/agents/<agent>/seed<k>/ and stop before the findings")
    s.add_argument("--from-agents", metavar="DIR", help="run the findings on checkpoints saved earlier (DIR/<agent>/seed<k>/, "
                   "e.g. OUT/agents of --train-only runs); one missing is an error naming the command that trains it")
    s.add_argument("--ray", nargs="?", const="", metavar="ADDRESS", help="with --retrain: each (agent, seed) a Ray task, on "
                   "a local Ray on all cores, or on the cluster at ADDRESS (HOST:6379); a log per task in OUT/logs/")
    s.add_argument("--steps-scale", type=float, default=1.0, help="with --retrain: every recipe's training steps times "
                   "this (at least 1): for tests and smoke runs")
    s.add_argument("--seed", type=int, default=0, help="evaluation seed for the shipped agents")
    s.add_argument("--quick", action="store_true", help="few episodes (a smoke run; numbers are noisy)")
    s.add_argument("--env", action="append", metavar="AGENT=ID",
                   help="the environment for one of the agents, if it names none or one this machine cannot make "
                        "(e.g. cartpole-dt=CartPole-v1; repeatable)")
    s.add_argument("--threads", type=int, default=1)


@sentences(FindingsError)
def cmd_register(args) -> dict:
    from analysis.research.registration import register as write
    from analysis.research.reproduce import finding_module

    disclosures = None
    if args.disclosures:
        try:
            disclosures = [line.strip() for line in Path(args.disclosures).read_text().splitlines() if line.strip()]
        except OSError as e:
            raise UserError(f"--disclosures {args.disclosures} cannot be read ({e.strerror}); give a text file, one "
                            "disclosure a line.") from None
    kw = {"path": args.findings} if args.findings else {}
    r = write(lambda fid: finding_module(fid).files, version=args.version, disclosures=disclosures,
              previous_commit=args.previous, **kw)
    if not args.json:
        print(f"{r['path']}: [registration] version {r['version']} written ({len(r['code'])} findings' code and recipe hashes)")
    return r


def _register_options(s):
    s.add_argument("--findings", metavar="PATH", help="the findings file (default: findings.toml)")
    s.add_argument("--version", type=int, help="the registration's version (default: the table's next, or 2)")
    s.add_argument("--previous", metavar="COMMIT", help="the commit of the registration this one replaces (default: "
                   "the commit that last changed the file's findings)")
    s.add_argument("--disclosures", metavar="FILE", help="a text file, one disclosure a line (default: those in the "
                   "table, or the drafted ones for version 2)")


@sentences(FindingsError)
def cmd_findings_table(args) -> dict:
    from analysis.research import readme_table as T

    if args.write:
        changed = T.write()
        if not args.json:
            print(f"{T.README}: findings table {'rewritten' if changed else 'already current'}")
        return {"changed": changed}
    text = T.table(T.load())
    if not args.json:
        print(text, end="")
    return {"table": text}


def _findings_table_options(s):
    s.add_argument("--write", action="store_true", help="rewrite the README's table (between its markers) in place")


def register(sub, names=None) -> None:
    """Add this module's subcommands (all, or those in `names`) to `sub`."""
    commands = {
        "reproduce": (cmd_reproduce, "the papers' findings on the shipped agents, as a report (md + html + figures)",
                      _reproduce_options),
        "findings-table": (cmd_findings_table, "the README's findings table from docs/report/findings.json",
                           _findings_table_options),
        "register": (cmd_register, "pin the findings' code and recipe hashes in findings.toml's [registration]",
                     _register_options),
    }
    add_commands(sub, commands, names)
