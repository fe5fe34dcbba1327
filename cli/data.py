"""Datasets: inspect (a dataset, or an agent's card), convert, make-data, make-samples."""
from __future__ import annotations

import sys
from pathlib import Path

from cli._common import UserError, _text_histogram, chosen, add_commands
from trajectories.samples import SAMPLE_DIR


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


def _inspect_options(s):
    s.add_argument("path")
    s.add_argument("--histogram", metavar="FIG", help="also write the returns histogram (.png, .svg, .pdf or .html)")


def cmd_convert(args) -> dict:
    from trajectories import load_dataset, save_dataset
    from trajectories.io import WRITERS

    if args.out and args.out_option and args.out != args.out_option:
        raise UserError(f"two outputs given ({args.out} and --out {args.out_option}); give one.")
    if not (args.out or args.out_option):
        raise UserError("no output given: name it after the input or with --out OUT.npz.")
    out = Path(args.out or args.out_option)
    if out.suffix.lower() not in WRITERS:
        raise UserError(f"cannot write {out.name}: expected an output ending in {', '.join(WRITERS)}.")
    if out.exists() and not args.force:
        raise UserError(f"{out} already exists; pass --force to overwrite it.")
    if args.source == "dqn-replay":
        return _convert_dqn_replay(args, out)
    if args.game or args.buffers is not None or args.trajectories_per_buffer is not None:
        raise UserError("--game, --buffers and --trajectories-per-buffer go with --from dqn-replay only.")
    if args.source == "dti-trajectories":
        # DTI's TrajectoryWriter pickles: read only through models/dti_trajectories.py's allow-list, never pickle.load
        from models.dti_trajectories import read_dti_trajectories

        ds = read_dti_trajectories(args.input)
    else:
        if Path(args.input).suffix.lower() in (".pkl", ".gz", ".xz"):
            raise UserError(f"{Path(args.input).name}: seqlens never unpickles a dataset; if it is a trajectory file "
                            "written by DecisionTransformerInterpretability, pass --from dti-trajectories.")
        ds = load_dataset(args.input)
    save_dataset(ds, out)
    result = {"input": str(args.input), "output": str(out), "n_episodes": ds.n_episodes, "n_transitions": ds.n_transitions}
    if not args.json:
        print(f"wrote {out} ({ds.n_episodes} episodes, {ds.n_transitions} steps)")
    return result


def _convert_dqn_replay(args, out: Path) -> dict:
    """Dopamine's DQN-replay buffers (the DT paper's Atari data) streamed into an npz of mapped frame stacks."""
    from envs import ACTION_LABELS, ATARI_GAMES
    from trajectories import load_dataset
    from trajectories.dqn_replay import convert_dqn_replay

    if out.suffix.lower() != ".npz":
        raise UserError(f"cannot write {out.name}: --from dqn-replay writes an .npz (its frame stacks memory-mapped).")
    games = {g.lower(): g for g in ATARI_GAMES}
    if not args.game or args.game.strip().lower() not in games:
        raise UserError(f"--from dqn-replay needs --game, one of the DT paper's games ({', '.join(ATARI_GAMES)}); "
                        f"got {(args.game or 'none')[:40]!r}.")
    env_id = f"seqlens/DTAtari-{games[args.game.strip().lower()]}-v0"
    summary = convert_dqn_replay(args.input, out, buffers=1 if args.buffers is None else args.buffers,
                                 trajectories_per_buffer=args.trajectories_per_buffer, env_id=env_id,
                                 n_actions=len(ACTION_LABELS[env_id]))
    ds = load_dataset(out)   # the written file read back as any upload would be (mapped, every check)
    result = {"input": str(args.input), "output": str(out), "env_id": env_id, "buffers": summary["buffers"],
              "n_episodes": ds.n_episodes, "n_transitions": ds.n_transitions}
    if not args.json:
        print(f"wrote {out} ({ds.n_episodes} episodes, {ds.n_transitions} steps of {env_id} from buffer(s) "
              f"{', '.join(map(str, summary['buffers']))})")
    return result


def _convert_options(s):
    s.add_argument("input")
    s.add_argument("out", nargs="?")
    s.add_argument("--out", dest="out_option", metavar="OUT", help="the output (instead of the second argument)")
    s.add_argument("--from", dest="source", choices=["dti-trajectories", "dqn-replay"],
                   help="read INPUT as this project's own format: dti-trajectories = a trajectory pickle written by "
                        "DecisionTransformerInterpretability (plain, .gz or .xz; read through an allow-list, never "
                        "unpickled; its infos are dropped); dqn-replay = a directory of Dopamine's DQN-replay "
                        "buffers ($store$_observation_ckpt.N.gz ..., the DT paper's Atari data)")
    s.add_argument("--game", help="dqn-replay only: the game the buffers hold (Breakout, Qbert, Pong or Seaquest)")
    s.add_argument("--buffers", type=int, help="dqn-replay only: read the N highest-numbered buffers (default 1)")
    s.add_argument("--trajectories-per-buffer", type=int,
                   help="dqn-replay only: whole episodes kept per buffer, oldest first (default: all)")
    s.add_argument("--force", action="store_true", help="overwrite OUT if it exists")


def cmd_make_data(args) -> dict:
    from envs.behaviour import DELAYED_IDS, behaviour_env_id, collect
    from trajectories import save_dataset
    from trajectories.io import WRITERS

    if args.episodes < 1:
        raise UserError(f"--episodes must be at least 1, got {args.episodes}.")
    out = Path(args.out)
    if out.suffix.lower() not in WRITERS:
        raise UserError(f"cannot write {out.name}: expected an output ending in {', '.join(WRITERS)}.")
    try:
        env_id = behaviour_env_id(args.env)
        if args.delayed_reward and env_id not in DELAYED_IDS:
            raise ValueError(f"no delayed-reward variant of {env_id} (expected one of {', '.join(DELAYED_IDS)}).")
        ds = collect(args.env, args.episodes, seed=args.seed, progress=not args.json)
    except ValueError as e:   # an unknown environment, or one without a scripted behaviour policy
        raise UserError(str(e)) from None
    if args.delayed_reward:
        from trajectories.transforms import delayed_rewards

        ds = delayed_rewards(ds, env_id=DELAYED_IDS[env_id])
    save_dataset(ds, out)
    result = {"output": str(out), "env_id": ds.env_id, **{k: v for k, v in ds.summary().items() if k != "env_id"}}
    if not args.json:
        print(f"wrote {out}: {ds.n_episodes} episodes, {ds.n_transitions} steps, returns "
              f"{result['return_min']:.4g} .. {result['return_max']:.4g} (mean {result['return_mean']:.4g})")
        print(_text_histogram(ds.episode_returns))
    return result


def _make_data_options(s):
    s.add_argument("--env", required=True, help="cartpole, pendulum, masked-cartpole, masked-pendulum, keydoor (or a gymnasium "
                   "id); or a named behaviour: keydoor-random (uniformly random actions, the DT paper's Key-to-Door "
                   "data), keydoor-cue, keydoor-cue-random (the cue variant)")
    s.add_argument("--episodes", type=int, required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--delayed-reward", action="store_true", help="pay each episode's summed reward on its last step, "
                   "0 before (the DT paper's delayed return); the data names the delayed-reward environment")


def cmd_make_samples(args) -> dict:
    """Regenerate every shipped dataset (deterministic by seed): what `make sample-data` runs."""
    import envs.behaviour as behaviour
    from envs.behaviour import DEFLATED_SAMPLES, SAMPLE_DATASETS, SHAPED_SAMPLES, collect
    from trajectories import save_dataset
    from trajectories.npz_format import write_npz

    out_dir = Path(args.out_dir)
    names = chosen(args.only, {**SAMPLE_DATASETS, **SHAPED_SAMPLES}, "shipped dataset")
    written = []
    for alias in names:
        if alias in SHAPED_SAMPLES:   # their own expert, not a scripted collect()
            builder, episodes, seed = SHAPED_SAMPLES[alias]
            ds = getattr(behaviour, builder)(episodes, seed=seed)
        else:
            env_id, episodes, seed = SAMPLE_DATASETS[alias]
            ds = collect(env_id, episodes, seed=seed, progress=not args.json)
        path = out_dir / f"{alias}.npz"
        if alias in DEFLATED_SAMPLES:   # frames that deflate ~100x: a small file beats a mapped one here
            path.parent.mkdir(parents=True, exist_ok=True)
            write_npz(ds, path, map_observations=False)
        else:
            save_dataset(ds, path)
        written.append({"name": alias, "path": str(path), "bytes": path.stat().st_size, "n_episodes": ds.n_episodes,
                        "n_transitions": ds.n_transitions, "return_min": float(ds.episode_returns.min()),
                        "return_max": float(ds.episode_returns.max())})
        if not args.json:
            print(f"wrote {path}: {ds.n_episodes} episodes, {ds.n_transitions} steps, {path.stat().st_size / 1e6:.2f} MB")
    return {"datasets": written}


def _make_samples_options(s):
    s.add_argument("--out-dir", default=str(SAMPLE_DIR))
    s.add_argument("--only", help="comma-separated dataset names")


def register(sub, names=None) -> None:
    """Add this module's subcommands (all, or those in `names`) to `sub`."""
    commands = {
        "inspect": (cmd_inspect, "summarise a dataset file or directory", _inspect_options),
        "convert": (cmd_convert, "convert a dataset between formats (by file extension)", _convert_options),
        "make-data": (cmd_make_data, "generate a behaviour dataset with a scripted policy", _make_data_options),
        "make-samples": (cmd_make_samples, "regenerate the shipped sample datasets", _make_samples_options),
    }
    add_commands(sub, commands, names)
