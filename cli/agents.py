"""Agents: train, evaluate, make-agents (the shipped ones), convert-agent (CORL / HF checkpoints)."""
from __future__ import annotations

import sys
from pathlib import Path

from cli._common import UserError, _parse_pairs, chosen, _parse_targets, _with_env, add_commands
from models.shipped import AGENT_DIR

_INPUT_HELP = {   # the input choices evaluate and export share (models.env_choice.with_choices)
    "--normalize-from": "normalise states with this dataset's mean and std (agents without statistics, e.g. HF imports)",
    "--rtg-scale": "divide returns-to-go by this (Decision Transformer)",
    "--raw-inputs": "use observations as they are, without the agent's state normalisation",
}


def add_input_options(s, env_help: str) -> None:
    """--env, --normalize-from, --rtg-scale, --raw-inputs (evaluate and export)."""
    s.add_argument("--env", help=env_help)
    s.add_argument("--normalize-from", metavar="DATA", help=_INPUT_HELP["--normalize-from"])
    s.add_argument("--rtg-scale", type=float, help=_INPUT_HELP["--rtg-scale"])
    s.add_argument("--raw-inputs", action="store_true", help=_INPUT_HELP["--raw-inputs"])


def _result_line(r: dict) -> str:
    target = "" if r["target_return"] is None else f"target {r['target_return']:g} -> "
    return f"{target}{r['mean_return']:.1f}"


def cmd_train(args) -> dict:
    import torch

    from models import save_agent
    from models.train import train
    from trajectories import load_dataset

    torch.set_num_threads(args.threads)
    ds = load_dataset(args.data)
    out = Path(args.out)
    if out.exists() and any(out.iterdir()) and not args.force:
        raise UserError(f"{out} already exists and is not empty; pass --force to overwrite it.")
    eval_fn = None
    if args.eval_every:
        from analysis.behaviour.evaluate import evaluate

        targets = _parse_targets(args.eval_targets) if args.eval_targets else None

        def eval_fn(agent, step):
            res = evaluate(agent, targets if args.model == "dt" else None, episodes=args.eval_episodes, progress=False)
            return ", ".join(_result_line(r) for r in res)
    try:
        agent = train(args.model, ds, steps=args.steps, seed=args.seed, context_length=args.context,
                      batch_size=args.batch_size, lr=args.lr, hparams=_parse_pairs(args.hparam, "--hparam"),
                      eval_every=args.eval_every if args.model not in ("dynamics",) else 0, eval_fn=eval_fn,
                      progress=not args.json, dataset_name=Path(args.data).name)
    except ValueError as e:
        raise UserError(str(e)) from None
    save_agent(agent, out)
    result = {"agent": str(out), "kind": args.model, "n_params": agent.n_params, **agent.config.training}
    if not args.json:
        print(f"wrote {out}: {args.model}, {agent.n_params:,} parameters, final loss {result['final_loss']:.4f} "
              f"in {result['seconds']:.0f} s")
    return result


def _train_options(s):
    s.add_argument("--model", required=True, choices=["dt", "tt", "mlp", "gru", "dynamics", "q", "drqn"],
                   help="q, drqn: value agents trained offline with CQL (--hparam alpha=0.1)")
    s.add_argument("--data", required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--context", type=int, help="context length K (steps; TT: transitions)")
    s.add_argument("--steps", type=int, default=2000)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--batch-size", type=int)
    s.add_argument("--lr", type=float)
    s.add_argument("--hparam", action="append", metavar="KEY=VALUE", help="model size etc., e.g. hidden=64 (repeatable)")
    s.add_argument("--eval-every", type=int, default=0, help="evaluate in the environment every N steps")
    s.add_argument("--eval-episodes", type=int, default=8)
    s.add_argument("--eval-targets", help="DT target returns for periodic evaluation, e.g. 100,500")
    s.add_argument("--threads", type=int, default=1, help="torch threads (small models on a shared 2-core machine: 1)")
    s.add_argument("--force", action="store_true")


def cmd_evaluate(args) -> dict:
    import warnings

    import torch

    from models import load_agent, save_agent
    from analysis.behaviour.evaluate import evaluate

    torch.set_num_threads(args.threads)
    agent = _with_env(load_agent(args.agent), args.env, args.normalize_from, args.rtg_scale, args.raw_inputs)
    targets = _parse_targets(args.target_returns) if args.target_returns else None
    if targets and not agent.has("return_conditioned"):
        print(f"note: a {agent.kind} agent is not return-conditioned; --target-returns is ignored.", file=sys.stderr)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            results = evaluate(agent, targets, episodes=args.episodes, seed=args.seed, sample=not args.argmax,
                               progress=not args.json)
        except ValueError as e:
            raise UserError(str(e)) from None
    warned = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
    for w in warned:
        print(f"warning: {w}", file=sys.stderr)
    if args.save:
        agent.config.evaluation = {"results": results, "seed": args.seed, "decoding": "argmax" if args.argmax else "sample"}
        save_agent(agent, args.agent)
    if not args.json:
        for r in results:
            target = "—" if r["target_return"] is None else f"{r['target_return']:g}"
            print(f"target {target:>8}: return {r['mean_return']:8.1f} ± {r['std_return']:.1f}  "
                  f"95% CI [{r['ci_low']:.1f}, {r['ci_high']:.1f}]  ({r['episodes']} episodes)")
    return {"agent": str(args.agent), "kind": agent.kind, "results": results, "warnings": warned}


def _evaluate_options(s):
    s.add_argument("--agent", required=True)
    s.add_argument("--target-returns", help="comma-separated target returns (Decision Transformer)")
    s.add_argument("--episodes", type=int, default=10)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--argmax", action="store_true", help="greedy actions instead of sampling (discrete)")
    add_input_options(s, "the environment to act in, for agents that name none (gymnasium id or D4RL name)")
    s.add_argument("--save", action="store_true", help="store the results in the agent's config.json")
    s.add_argument("--threads", type=int, default=1, help="torch threads (rollouts are many tiny steps: 1)")


def cmd_convert_agent(args) -> dict:
    """A CORL or HF Decision Transformer directory, or a DTI checkpoint file -> a seqlens checkpoint (models/convert.py)."""
    from models.convert import convert_agent

    result = convert_agent(args.source, args.out, args.source_format, args.context, args.rtg_scale, args.force,
                           n_head=args.n_head, env=args.env)
    for note in result["notes"]:
        print(f"note: {note}", file=sys.stderr)
    if not args.json:
        r = result
        source = {"corl": "CORL", "hf": "Hugging Face", "dti": "DTI", "dt-atari": "the DT paper's Atari code"}[r["from"]]
        states = ("x".join(map(str, r["obs_shape"])) + " observations" if r.get("obs_shape")
                  else f"{r['obs_dim']}-d states")
        actions = f"{r['n_actions']} actions" if r.get("n_actions") else f"{r['act_dim']}-d actions"
        print(f"wrote {r['out']}: a Decision Transformer from {source} ({states}, {actions}, context "
              f"{r['context_length']}, rtg_scale {r['rtg_scale']:g}, env {r['env_id'] or 'none'}), {r['n_params']:,} parameters")
    return result


def _convert_agent_options(s):
    s.add_argument("source", metavar="SOURCE", help="CORL's checkpoints_path (config.yaml + dt_checkpoint.pt), an HF "
                   "directory, a DTI checkpoint file or the DT paper's Atari state dict (.pt)")
    s.add_argument("--from", dest="source_format", choices=["corl", "hf", "dti", "dt-atari"],
                   help="what SOURCE holds (default: detected)")
    s.add_argument("--n-head", type=int, help="dt-atari only: attention heads (shapes do not say; the paper used 8)")
    s.add_argument("--env", help="the environment the agent acts in (dt-atari; for dti, instead of its env_id), kept "
                   "where its spaces fit")
    s.add_argument("--out", required=True, help="the seqlens checkpoint directory to write")
    s.add_argument("--context", type=int, help="HF only: context length K (HF configs lack it; default 20)")
    s.add_argument("--rtg-scale", type=float, help="HF only: returns-to-go are divided by this (default 1000)")
    s.add_argument("--force", action="store_true", help="overwrite OUT if it exists")


def _train_recipe(name: str, seed: int, progress: bool, ds=None):
    """One shipped agent's recipe (models/recipes.py) trained with `seed`: `make sample-agents` trains through here,
    `reproduce --retrain`'s pieces through the same analysis.research.seed_runs.train_recipe."""
    from analysis.research.seed_runs import train_recipe

    return train_recipe(name, seed, progress=progress, ds=ds)


def cmd_make_agents(args) -> dict:
    """Train, evaluate and save the shipped agents (what `make sample-agents` runs), then their README table."""
    import torch

    from models import save_agent
    from analysis.behaviour.evaluate import evaluate, prediction_error
    from models.recipes import SAMPLE_AGENTS
    from trajectories import load_dataset
    from trajectories.samples import SAMPLE_DIR

    torch.set_num_threads(args.threads)
    out_dir = Path(args.out_dir)
    names = chosen(args.only, SAMPLE_AGENTS, "shipped agent")
    done = []
    for name in names:
        r = SAMPLE_AGENTS[name]
        ds = None if r.get("online") else load_dataset(SAMPLE_DIR / f"{r['data']}.npz")   # online: no dataset
        agent = _train_recipe(name, args.seed, progress=not args.json, ds=ds)
        if agent.has("acts"):
            results = evaluate(agent, r.get("targets"), episodes=r["episodes"], seed=1000 + args.seed, progress=not args.json)
            agent.config.evaluation = {"results": results, "seed": 1000 + args.seed,
                                       "decoding": "greedy" if agent.has("q_values") else "sample"}
        else:
            agent.config.evaluation = {"prediction_error": prediction_error(agent, ds, seed=1000 + args.seed)}
        path = save_agent(agent, out_dir / name)
        size = sum(p.stat().st_size for p in path.iterdir())
        done.append({"name": name, "kind": r["kind"], "data": r["data"], "n_params": agent.n_params, "bytes": size,
                     "train_seconds": agent.config.training["seconds"], "evaluation": agent.config.evaluation.get("results")})
        if not args.json:
            print(f"{name}: {agent.n_params:,} params, {size / 1e6:.2f} MB, trained in {agent.config.training['seconds']:.0f} s",
                  file=sys.stderr)
    from models.report import agents_table

    (out_dir / "README.md").write_text("# Shipped agents\n\nRegenerate with `make sample-agents`; evaluated by "
                                       "`cli.py evaluate` (actions sampled, seeds 1000+).\n\n" + agents_table(out_dir))
    return {"agents": done}


def _make_agents_options(s):
    s.add_argument("--out-dir", default=str(AGENT_DIR))
    s.add_argument("--only", help="comma-separated agent names")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--threads", type=int, default=1, help="torch threads (1: small models gain nothing from more)")


def register(sub, names=None) -> None:
    """Add this module's subcommands (all, or those in `names`) to `sub`."""
    commands = {
        "convert-agent": (cmd_convert_agent, "convert a CORL DT checkpoint, an HF pytorch_model.bin directory or a DTI "
                          "checkpoint file to a seqlens checkpoint", _convert_agent_options),
        "train": (cmd_train, "train an agent on a dataset", _train_options),
        "evaluate": (cmd_evaluate, "run an agent in its environment (one batched vector env)", _evaluate_options),
        "make-agents": (cmd_make_agents, "train and evaluate the shipped sample agents", _make_agents_options),
    }
    add_commands(sub, commands, names)
