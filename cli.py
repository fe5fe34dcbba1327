"""seqlens command line: inspect, convert, make-data, make-samples, train, evaluate, export, reproduce, bench.

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
    from models.errors import is_agent_path

    if is_agent_path(args.path):
        return _inspect_agent(args)
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
        from analysis.publish.export import write_figure
        from analysis.publish.figures import returns_histogram
        from analysis.publish.figures.text import plain

        title = f"Episode returns — {plain(Path(args.path).stem)} ({ds.n_episodes} episodes, {plain(ds.env_id or 'unknown env')})"
        try:
            out["histogram"] = str(write_figure(returns_histogram(ds.episode_returns, title), args.histogram))
        except ValueError as e:
            raise UserError(str(e)) from None
    return out


def _inspect_agent(args) -> dict:
    from models import load_agent

    agent = load_agent(args.path)
    card = agent.card()
    notes = list(getattr(agent, "notes", None) or [])
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    if not args.json:
        print(f"{args.path}  (agent)")
        for key, val in card.items():
            if key != "evaluation":
                print(f"  {key:<16} {val}")
        for r in card.get("evaluation") or []:
            target = "—" if r["target_return"] is None else f"{r['target_return']:g}"
            print(f"  target {target:>8}: return {r['mean_return']:.1f}  95% CI [{r['ci_low']:.1f}, {r['ci_high']:.1f}]  ({r['episodes']} episodes)")
    return {"format": "agent", **card, "notes": notes}


def _parse_pairs(items, flag: str) -> dict:
    """Repeated KEY=VALUE options; values are JSON where they parse (numbers, lists, null), else strings."""
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UserError(f"{flag} expects KEY=VALUE, got '{item}'.")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


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


def _result_line(r: dict) -> str:
    target = "" if r["target_return"] is None else f"target {r['target_return']:g} -> "
    return f"{target}{r['mean_return']:.1f}"


def _parse_targets(text: str) -> list[float]:
    import math

    try:
        targets = [float(t) for t in str(text).split(",") if t.strip()]
    except ValueError:
        targets = None
    if not targets or not all(math.isfinite(t) for t in targets):
        raise UserError(f"--target-returns expects comma-separated finite numbers, e.g. 100,300,500; got '{text}'.")
    return targets


def cmd_evaluate(args) -> dict:
    import warnings

    import torch

    from models import load_agent, save_agent
    from analysis.behaviour.evaluate import evaluate

    torch.set_num_threads(args.threads)
    agent = _with_env(load_agent(args.agent), args.env, args.normalize_from, args.rtg_scale, args.raw_inputs)
    targets = _parse_targets(args.target_returns) if args.target_returns else None
    if targets and agent.kind != "dt":
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


def _with_env(agent, env: str | None, normalize_from: str | None = None, rtg_scale: float | None = None,
              raw_inputs: bool = False):
    """--env ID: the agent acts in that environment (a D4RL name like hopper-medium-v2 works too);
    --normalize-from DATA: states normalised with that dataset's mean and std (what HF's and CORL's training code
    did; HF imports carry none); --raw-inputs: observations used as they are, whatever statistics the agent
    stores; --rtg-scale X: returns-to-go divided by X. The same twins, in the same order, as Home's choices
    (ui.agents.agent_in_session), so a bundle's remake line gives the page's figure."""
    from models.env_choice import dataset_statistics, with_env, with_inputs, without_normalization

    if normalize_from and raw_inputs:
        raise UserError("--normalize-from and --raw-inputs contradict each other; give one of them.")
    if env:
        agent = with_env(agent, env, name="--env")
    if raw_inputs:
        agent = without_normalization(agent)
    if normalize_from:
        from trajectories import load_dataset

        mean, std = dataset_statistics(load_dataset(normalize_from))
        agent = with_inputs(agent, mean, std, name="--normalize-from", source=Path(normalize_from).name,
                            path=normalize_from)
    if rtg_scale is not None:
        agent = with_inputs(agent, rtg_scale=rtg_scale, name="--rtg-scale")
    return agent


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


def cmd_convert_agent(args) -> dict:
    """A CORL or HF Decision Transformer directory -> a seqlens checkpoint (models/convert.py)."""
    from models.convert import convert_agent

    result = convert_agent(args.source, args.out, args.source_format, args.context, args.rtg_scale, args.force)
    for note in result["notes"]:
        print(f"note: {note}", file=sys.stderr)
    if not args.json:
        r = result
        print(f"wrote {r['out']}: a Decision Transformer from {'CORL' if r['from'] == 'corl' else 'Hugging Face'} "
              f"({r['obs_dim']}-d states, {r['act_dim']}-d actions, context {r['context_length']}, rtg_scale {r['rtg_scale']:g}, "
              f"env {r['env_id'] or 'none'}), {r['n_params']:,} parameters")
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
        ds = collect(args.env, args.episodes, seed=args.seed, progress=not args.json)
    except ValueError as e:   # an unknown environment, or one without a scripted behaviour policy
        raise UserError(str(e)) from None
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
    names = [n for n in SAMPLE_DATASETS if not args.only or n in args.only.split(",")]
    if not names:
        raise UserError(f"no shipped dataset matches --only {args.only}; expected some of {', '.join(SAMPLE_DATASETS)}.")
    written = []
    for alias in names:
        env_id, episodes, seed = SAMPLE_DATASETS[alias]
        ds = collect(env_id, episodes, seed=seed, progress=not args.json)
        path = out_dir / f"{alias}.npz"
        save_dataset(ds, path)
        written.append({"name": alias, "path": str(path), "bytes": path.stat().st_size, "n_episodes": ds.n_episodes,
                        "n_transitions": ds.n_transitions, "return_min": float(ds.episode_returns.min()),
                        "return_max": float(ds.episode_returns.max())})
        if not args.json:
            print(f"wrote {path}: {ds.n_episodes} episodes, {ds.n_transitions} steps, {path.stat().st_size / 1e6:.2f} MB")
    return {"datasets": written}


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
    names = [n for n in SAMPLE_AGENTS if not args.only or n in args.only.split(",")]
    if not names:
        raise UserError(f"no shipped agent matches --only {args.only}; expected some of {', '.join(SAMPLE_AGENTS)}.")
    done = []
    for name in names:
        r = SAMPLE_AGENTS[name]
        ds = load_dataset(SAMPLE_DIR / f"{r['data']}.npz")
        agent = _train_recipe(name, args.seed, progress=not args.json, ds=ds)
        if r["kind"] != "dynamics":
            results = evaluate(agent, r.get("targets"), episodes=r["episodes"], seed=1000 + args.seed, progress=not args.json)
            agent.config.evaluation = {"results": results, "seed": 1000 + args.seed, "decoding": "sample"}
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


def _default_data(agent):
    """An agent trained on a shipped dataset gets that dataset when --data is left out."""
    name = agent.config.dataset.get("name")
    path = ROOT / "sample_data" / "datasets" / f"{Path(name).stem}.npz" if name else None
    return path if path is not None and path.exists() else None


def cmd_export(args) -> dict:
    import inspect

    import torch

    from analysis.publish import catalog
    torch.set_num_threads(args.threads)
    entries = catalog.figures()
    if args.list:
        if not args.json:
            for e in entries.values():
                print(f"  {e.name:<24} {'agent + data' if e.needs_agent else 'data'}  {e.description}")
        return {"figures": [{"name": e.name, "description": e.description, "needs_agent": e.needs_agent} for e in entries.values()]}
    if not args.figure or not args.out:
        raise UserError("export needs --figure NAME and --out FILE (or --list to see the figures).")
    if args.figure not in entries:
        raise UserError(f"unknown figure '{args.figure}'; known figures: {', '.join(entries)}.")
    entry = entries[args.figure]
    params = _parse_pairs(args.param, "--param")
    accepted = [p for p in inspect.signature(entry.make).parameters if p not in ("agent", "dataset")]
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise UserError(f"figure '{args.figure}' takes {', '.join(accepted) or 'no parameters'}; not {', '.join(unknown)}.")
    from analysis.publish.export import FORMATS, VIDEO_FORMATS, bundle, write_figure
    from models import load_agent
    from trajectories import load_dataset

    out = Path(args.out)
    fmt = (args.format or out.suffix.lstrip(".")).lower()
    if entry.formats and fmt not in (*entry.formats, "zip"):   # an animation is written only in its own formats
        raise UserError(f"figure '{args.figure}' is an animation: export it as {' or '.join(entry.formats)} (or zip, "
                        f"a bundle), not '{fmt or '(none)'}'.")
    if not entry.formats and fmt in VIDEO_FORMATS:
        animated = ", ".join(e.name for e in entries.values() if e.formats)
        raise UserError(f"figure '{args.figure}' is a still figure and {fmt} is for animated ones ({animated}); "
                        f"expected one of {', '.join(FORMATS)} or zip (a bundle).")
    if entry.formats and args.compare:
        raise UserError(f"figure '{args.figure}' animates one agent's episode, so it takes no --compare.")
    if not args.agent and (args.env or args.normalize_from or args.raw_inputs or args.rtg_scale is not None):
        raise UserError("--env, --normalize-from, --raw-inputs and --rtg-scale apply to an agent (--agent DIR).")
    if args.compare and not entry.needs_agent:
        raise UserError(f"figure '{args.figure}' draws the dataset alone, so --compare has no second agent to draw; it "
                        "applies to the figures of an agent (those listed as 'agent + data' by --list).")
    if args.compare and not args.agent:
        raise UserError("--compare adds a second agent beside the first: give the first with --agent DIR.")
    agent = (_with_env(load_agent(args.agent), args.env, args.normalize_from, args.rtg_scale, args.raw_inputs)
             if args.agent else None)
    if entry.needs_agent and agent is None:
        raise UserError(f"figure '{args.figure}' needs an agent (--agent DIR).")
    # a figure that rolls out (episode_video) acts in the agent's environment when --data is left out
    data_path = args.data or (_default_data(agent) if agent is not None and not entry.rolls_out else None)
    if data_path is None and not (entry.rolls_out and agent is not None):
        raise UserError(f"figure '{args.figure}' needs a dataset (--data PATH)"
                        + (" or an agent to roll out in its environment (--agent DIR)." if entry.rolls_out else "."))
    dataset = load_dataset(data_path) if data_path is not None else None
    if agent is not None and dataset is not None:
        from models.checks import check_dataset

        check_dataset(agent, dataset)
    if fmt != "zip" and fmt not in (*FORMATS, *entry.formats):
        raise UserError(f"cannot export as '{fmt or '(none)'}'; expected one of {', '.join(FORMATS)} or zip (a bundle).")
    from analysis.publish.compare_mode import CompareError, compare

    other = _compare_agent(args, agent, dataset) if args.compare else None
    try:
        if other is not None:
            figured = compare(args.figure, agent, other["agent"], dataset, Path(args.agent).name, other["name"], **params)
        else:
            figured = catalog.make(args.figure, agent, dataset, **params)
    except CompareError as e:
        raise UserError(str(e)) from None
    except (ValueError, IndexError) as e:
        raise UserError(f"figure '{args.figure}': {e}") from None
    extra = {}
    if fmt == "zip":
        out.parent.mkdir(parents=True, exist_ok=True)
        try:
            data = bundle([figured], agent=agent, dataset=dataset, agent_path=args.agent, data_path=data_path,
                          page="cli", compare=other)
        except ValueError as e:   # an animation of an episode no frame can be drawn of: the sentence saying why
            raise UserError(f"figure '{args.figure}': {e}") from None
        out.write_bytes(data)
    elif figured.video is not None:
        try:
            enc = figured.video.encode(fmt)
        except ValueError as e:
            raise UserError(f"figure '{args.figure}': {e}") from None
        target = out.with_suffix(f".{fmt}") if out.suffix.lstrip(".").lower() != fmt else out
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(enc.data)
        extra = {"frames": enc.n_frames, "width": enc.width, "height": enc.height, "fps": enc.fps,
                 "bytes": len(enc.data), "notes": enc.notes}
        for note in enc.notes:
            print(f"note: {note}", file=sys.stderr)
    else:
        write_figure(figured.figure, out.with_suffix(f".{fmt}") if out.suffix.lstrip(".").lower() != fmt else out,
                     data=figured.data)
    if not args.json:
        print(f"wrote {out} ({args.figure}, {fmt}" + (f", {extra['frames']} frames of {extra['width']} x "
                                                       f"{extra['height']}, {extra['bytes'] / 1e6:.2f} MB)" if extra else ")"))
    return {"figure": args.figure, "format": fmt, "out": str(out), "params": figured.params,
            "agent": str(args.agent) if args.agent else None, "compare": args.compare,
            "data": str(data_path) if data_path is not None else None, "rows": int(len(figured.data)), **extra}


def _compare_agent(args, agent, dataset) -> dict:
    """--compare B: the checkpoint at B, or "randomized" (the first agent with its weights re-initialised, seed 0:
    analysis.publish.compare_mode.randomized_twin), with the first agent's --env (where B names no environment it can act in),
    --normalize-from and --raw-inputs; its own return-to-go scale. {agent, name, path} for compare and the bundle.
    One sentence when it cannot read the dataset."""
    from analysis.publish.compare_mode import RANDOMIZED, CompareError, check_pair, randomized_twin
    from models import load_agent
    from models.env_choice import can_act

    first = Path(args.agent).name
    if args.compare == RANDOMIZED:
        return {"agent": randomized_twin(agent), "name": f"randomized twin of {first}", "path": RANDOMIZED}
    other = load_agent(args.compare)
    env = args.env if args.env and not (can_act(other) and not getattr(other, "notes", None)) else None
    other = _with_env(other, env, args.normalize_from, None, args.raw_inputs)
    name = Path(args.compare).name
    try:
        check_pair(agent, other, dataset, first, f"--compare {name}")
    except CompareError as e:
        raise UserError(str(e)) from None
    return {"agent": other, "name": name, "path": args.compare}


def _reproduce_envs(items, names) -> dict[str, str]:
    """reproduce's --env AGENT=ID (repeatable) -> {agent: environment id}. reproduce runs the shipped agents,
    each naming its own environment, so a choice is per agent; one sentence for anything else."""
    out = {}
    for item in items or []:
        name, sep, env = (part.strip() for part in str(item).partition("="))
        if not sep or not name or not env:
            raise UserError(f"reproduce runs several agents, each in its own environment: --env expects AGENT=ID "
                            f"(e.g. cartpole-dt=CartPole-v1), for an agent that names no environment or one this "
                            f"machine cannot make; got '{item}'.")
        if name not in names:
            raise UserError(f"--env {item}: reproduce uses no agent named '{name}'; its agents are {', '.join(names)}.")
        if out.get(name, env) != env:
            raise UserError(f"--env gives {name} two environments ({out[name]} and {env}); give one.")
        out[name] = env
    return out


def _agent_in_env(name: str, agent, chosen: dict):
    """The agent acting where --env AGENT=ID put it: a twin (models.env_choice.with_env) for an agent that names no
    environment or one this machine cannot make; an agent that names a usable one keeps it (choosing another is an
    error: the findings are about the environment the agent was trained in)."""
    env = chosen.get(name)
    if env is None:
        return agent
    import envs
    from models.env_choice import can_act, with_env
    from models.errors import AgentError

    if can_act(agent):
        try:
            resolved = envs.resolve_env_id(env)
        except ValueError:
            resolved = env
        if resolved == agent.config.env_id:
            return agent
        raise UserError(f"--env {name}={env}: {name} already acts in {agent.config.env_id}; --env applies only to an "
                        "agent that names no environment or one this machine cannot make.")
    try:
        return with_env(agent, env, name=f"--env {name}={env}")
    except AgentError as e:
        raise UserError(str(e)) from None


def _int_list(text: str, flag: str) -> list[int]:
    try:
        out = [int(t) for t in str(text).split(",") if t.strip()]
    except ValueError:
        out = []
    if not out or min(out) < 0:
        raise UserError(f"{flag} expects comma-separated integers >= 0, e.g. 0,1,2; got '{text}'.")
    return sorted(set(out))


def _reproduce_pieces(args):
    """reproduce's training seeds and, with --retrain or --from-agents, {(agent, seed): checkpoint directory}
    (analysis/research/seed_runs.py: pieces trained now, in this process or as Ray tasks, or saved earlier); None for the
    shipped agents. Every contradiction is one sentence before anything trains."""
    from analysis.research.seed_runs import SeedRunError, agent_checkpoints, findings_agents

    if not args.retrain:
        for flag, given in (("--ray", args.ray is not None), ("--agents", args.agents), ("--train-only", args.train_only),
                            ("--steps-scale", args.steps_scale != 1.0)):
            if given:
                raise UserError(f"{flag} applies to training: add --retrain (or drop {flag}).")
        if args.seed_list and not args.from_agents:
            raise UserError("--seed-list chooses training seeds: add --retrain or --from-agents DIR.")
    if args.train_only and args.from_agents:
        raise UserError("--train-only stops before the findings, so --from-agents (checkpoints for the findings) has "
                        "nothing to do; drop one of them.")
    if args.retrain and args.from_agents and not args.agents:
        raise UserError("--retrain with --from-agents DIR trains the --agents you name and takes the rest from DIR; "
                        "name them with --agents A,B (or drop --retrain to use DIR alone).")
    if not args.steps_scale > 0:
        raise UserError(f"--steps-scale must be > 0, got {args.steps_scale}.")
    seeds = _int_list(args.seed_list, "--seed-list") if args.seed_list else list(range(args.seeds))
    if not (args.retrain or args.from_agents):
        return seeds, None
    train = ([a.strip() for a in args.agents.split(",") if a.strip()] if args.agents
             else findings_agents() if args.retrain else [])
    if args.agents is not None and not train:
        raise UserError("--agents expects comma-separated recipe names, e.g. cartpole-dt,pendulum-dt.")
    try:
        return seeds, agent_checkpoints([] if args.train_only else findings_agents(), seeds, Path(args.out), train=train,
                                        from_agents=args.from_agents, use_ray=args.ray is not None,
                                        ray_address=args.ray or None, steps_scale=args.steps_scale,
                                        progress=not args.json)
    except SeedRunError as e:
        raise UserError(str(e)) from None


def _pieces_text(args, seeds) -> str:
    """The report's line on where the agents came from."""
    text = (f"{seeds[0]}..{seeds[-1]}" if len(seeds) > 1 and seeds == list(range(seeds[0], seeds[-1] + 1))
            else ",".join(map(str, seeds)))
    if args.retrain and not args.from_agents:
        return f"agents retrained with seeds {text}"
    if not args.retrain:
        return f"agents trained earlier with seeds {text} (checkpoints from {args.from_agents})"
    return f"{args.agents} retrained and the other agents trained earlier ({args.from_agents}), seeds {text}"


def cmd_reproduce(args) -> dict:
    import time

    import torch

    from analysis.research.findings import read_seed_files, write_seed_file
    from analysis.research.report import write_report
    from analysis.research.reproduce import AGENTS, NotProvided, command_line, describe_seeds, pool_runs, run_all, seed_results
    from models import load_agent
    from trajectories import load_dataset
    from trajectories.samples import SAMPLE_DIR

    torch.set_num_threads(args.threads)
    if args.seeds < 1:
        raise UserError(f"--seeds must be at least 1, got {args.seeds}.")
    chosen = _reproduce_envs(args.env, AGENTS)
    shipped = {}
    for name in chosen:   # checked before anything runs; a retrained agent has its shipped twin's spaces and env
        path = ROOT / "sample_data" / "agents" / name
        if path.is_dir():
            shipped[name] = _agent_in_env(name, load_agent(path), chosen)
    log = (lambda m: None) if args.json else (lambda m: print(m, file=sys.stderr, flush=True))
    data = {}

    def dataset(name):
        if name not in data:
            data[name] = load_dataset(SAMPLE_DIR / f"{name}.npz")
        return data[name]

    t0 = time.perf_counter()
    seeds, checkpoints = _reproduce_pieces(args)   # --retrain (--ray, --agents, ...) or --from-agents; else None
    if args.train_only:
        trained = [{"agent": n, "seed": k, "path": str(p)} for (n, k), p in checkpoints.items()]
        if not args.json:
            print(f"trained {len(trained)} piece(s) in {time.perf_counter() - t0:.0f} s: checkpoints in "
                  f"{Path(args.out) / 'agents'}/<agent>/seed<k>/, logs in {Path(args.out) / 'logs'}/")
        return {"trained": trained, "logs": str(Path(args.out) / "logs"), "seconds": round(time.perf_counter() - t0, 1)}
    runs = []
    for seed in (seeds if checkpoints is not None else [args.seed]):
        if checkpoints is not None:   # trained agents per seed (now, or earlier): the findings run on them here
            log(f"seed {seed}: the findings on the agents trained with seed {seed}")
            loaded = {}

            def load(name, seed=seed, loaded=loaded):
                if name not in loaded:
                    if (name, seed) not in checkpoints:
                        raise NotProvided(f"the findings asked for {name} seed {seed}, which --retrain / --from-agents "
                                          "did not provide.")
                    loaded[name] = _agent_in_env(name, load_agent(checkpoints[(name, seed)]), chosen)
                return loaded[name]
        else:
            def load(name):
                if name in shipped:
                    return shipped[name]
                return load_agent(ROOT / "sample_data" / "agents" / name)
        try:
            runs.append(run_all(load, dataset, seed=seed, quick=args.quick, log=log,
                                training_seed=seed if checkpoints is not None else 0))
        except NotProvided as e:
            raise UserError(str(e)) from None
        if checkpoints is not None:   # each seed's raw values: seeds run piece by piece, committed in docs/report/seeds
            write_seed_file(Path(args.out) / "seeds", seed, seed_results(runs[-1]), command_line(args), args.quick,
                            agents=f"trained with seed {seed}")
    done = dict(zip(seeds if checkpoints is not None else [0], runs))
    others = ({k: {"findings": seed_results(r)} for k, r in list(done.items())[1:]} if checkpoints is not None else
              read_seed_files(ROOT / "docs" / "report" / "seeds", quick=args.quick, skip={0}, log=log))
    findings = pool_runs(runs[0], others, seed=args.seed)
    agents = _pieces_text(args, seeds) if checkpoints is not None else "the shipped agents"
    if others and checkpoints is None:
        agents += f", pooled with seeds {', '.join(map(str, sorted(others)))} from docs/report/seeds"
    if chosen:
        agents += " (environments chosen with --env: " + ", ".join(f"{k} in {v}" for k, v in chosen.items()) + ")"
    meta = {"agents": agents, "envs": chosen, "seconds": round(time.perf_counter() - t0, 1), "quick": args.quick,
            "seeds": describe_seeds(done, others, "measured here")}
    paths = write_report(findings, Path(args.out), runs if len(runs) > 1 else None, meta)
    if not args.json:
        for f in findings:
            print(f"{f.id:<20} {f.verdict}: {f.measured}")
        print(f"report: {paths['report_md']} and {paths['report_html']} ({meta['seconds']:.0f} s)")
    return {"findings": [f.to_json() for f in findings], "per_seed": [[f.to_json() for f in r] for r in runs] if len(runs) > 1 else None,
            **paths, "seconds": meta["seconds"]}


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

    s = sub.add_parser("convert-agent", help="convert a CORL DT checkpoint or an HF pytorch_model.bin directory to a seqlens checkpoint")
    s.add_argument("source", metavar="DIR", help="CORL's checkpoints_path (config.yaml + dt_checkpoint.pt) or an HF directory")
    s.add_argument("--from", dest="source_format", choices=["corl", "hf"], help="what DIR holds (default: detected)")
    s.add_argument("--out", required=True, help="the seqlens checkpoint directory to write")
    s.add_argument("--context", type=int, help="HF only: context length K (HF configs lack it; default 20)")
    s.add_argument("--rtg-scale", type=float, help="HF only: returns-to-go are divided by this (default 1000)")
    s.add_argument("--force", action="store_true", help="overwrite OUT if it exists")
    s.set_defaults(func=cmd_convert_agent)

    s = sub.add_parser("make-data", help="generate a behaviour dataset with a scripted policy")
    s.add_argument("--env", required=True, help="cartpole, pendulum, masked-cartpole, masked-pendulum, keydoor (or a gymnasium id)")
    s.add_argument("--episodes", type=int, required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--seed", type=int, default=0)
    s.set_defaults(func=cmd_make_data)

    s = sub.add_parser("train", help="train an agent on a dataset")
    s.add_argument("--model", required=True, choices=["dt", "tt", "mlp", "gru", "dynamics"])
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
    s.set_defaults(func=cmd_train)

    s = sub.add_parser("evaluate", help="run an agent in its environment (one batched vector env)")
    s.add_argument("--agent", required=True)
    s.add_argument("--target-returns", help="comma-separated target returns (Decision Transformer)")
    s.add_argument("--episodes", type=int, default=10)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--argmax", action="store_true", help="greedy actions instead of sampling (discrete)")
    s.add_argument("--env", help="the environment to act in, for agents that name none (gymnasium id or D4RL name)")
    s.add_argument("--normalize-from", metavar="DATA", help="normalise states with this dataset's mean and std (agents without statistics, e.g. HF imports)")
    s.add_argument("--rtg-scale", type=float, help="divide returns-to-go by this (Decision Transformer)")
    s.add_argument("--raw-inputs", action="store_true", help="use observations as they are, without the agent's state normalisation")
    s.add_argument("--save", action="store_true", help="store the results in the agent's config.json")
    s.add_argument("--threads", type=int, default=1, help="torch threads (rollouts are many tiny steps: 1)")
    s.set_defaults(func=cmd_evaluate)

    s = sub.add_parser("make-samples", help="regenerate the shipped sample datasets")
    s.add_argument("--out-dir", default=str(ROOT / "sample_data" / "datasets"))
    s.add_argument("--only", help="comma-separated dataset names")
    s.set_defaults(func=cmd_make_samples)

    s = sub.add_parser("make-agents", help="train and evaluate the shipped sample agents")
    s.add_argument("--out-dir", default=str(ROOT / "sample_data" / "agents"))
    s.add_argument("--only", help="comma-separated agent names")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--threads", type=int, default=1, help="torch threads (1: small models gain nothing from more)")
    s.set_defaults(func=cmd_make_agents)

    s = sub.add_parser("export", help="make one figure headless (png, svg, pdf, html, csv, or a zip bundle; gif or mp4 "
                       "for episode_video)")
    s.add_argument("--figure", help="figure name (see --list)")
    s.add_argument("--agent", help="agent checkpoint directory or zip")
    s.add_argument("--data", help="dataset (default: the shipped dataset the agent was trained on; episode_video: a "
                   "rollout of the agent in its environment)")
    s.add_argument("--format", help="png, svg, pdf, html, csv or zip; gif or mp4 for episode_video (default: from --out)")
    s.add_argument("--out", help="output file")
    s.add_argument("--param", action="append", metavar="KEY=VALUE", help="figure parameter, e.g. episode=3 (repeatable)")
    s.add_argument("--env", help="the environment the agent acts in, for agents that name none (gymnasium id or D4RL name)")
    s.add_argument("--normalize-from", metavar="DATA", help="normalise states with this dataset's mean and std (agents without statistics, e.g. HF imports)")
    s.add_argument("--rtg-scale", type=float, help="divide returns-to-go by this (Decision Transformer)")
    s.add_argument("--raw-inputs", action="store_true", help="use observations as they are, without the agent's state normalisation")
    s.add_argument("--compare", metavar="AGENT", help="a second agent beside the first on the same data (checkpoint directory "
                   "or zip, or 'randomized': the first agent with re-initialised weights): side by side, with B − A where "
                   "a difference means something")
    s.add_argument("--list", action="store_true", help="list the figures and exit")
    s.add_argument("--threads", type=int, default=1)
    s.set_defaults(func=cmd_export)

    s = sub.add_parser("reproduce", help="the papers' findings on the shipped agents, as a report (md + html + figures)")
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
    s.set_defaults(func=cmd_reproduce)

    s = sub.add_parser("bench", help="benchmarks: each fast path against its naive twin")
    s.add_argument("--only", help="run only benchmarks whose name contains this")
    s.add_argument("--quick", action="store_true", help="smaller sizes (for a smoke test)")
    s.add_argument("--hostile", action="store_true", help="time and peak memory of refusing each hostile file (SECURITY.md)")
    s.add_argument("--scale", action="store_true", help="every page on a 1M-transition D4RL-shaped file and an HF-hopper-size "
                   "agent, and the shipped agents on a fresh server: seconds and peak memory against the targets")
    s.set_defaults(func=cmd_bench)

    for sp in sub.choices.values():
        sp.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    return p


def main(argv=None) -> int:
    from models.errors import AgentError
    from trajectories.errors import DatasetError

    try:
        args = build_parser().parse_args(argv)
        result = args.func(args)
    except (UserError, DatasetError, AgentError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted.", file=sys.stderr)
        return 2
    except SystemExit as e:  # --help
        return int(e.code or 0)
    if args.json:
        json.dump(json_ready(result), sys.stdout, allow_nan=False)
        sys.stdout.write("\n")
    return 0


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


if __name__ == "__main__":
    sys.exit(main())
