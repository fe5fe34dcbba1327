"""The report from a request in the words of `cli.py reproduce`: every check on the request (one sentence each,
before anything trains or runs), where the agents come from (the shipped ones; or pieces trained now, in this
process or as Ray tasks, or saved earlier: analysis/research/seed_runs.py), the findings per seed
(analysis/research/reproduce.py), their pooling with the committed seed files, and the report (report.py).

The command line parses its options into `ReproduceOptions` and calls `reproduce_report`; the result holds the
Finding objects, each seed's run and the report's paths.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from models.shipped import AGENT_DIR

ROOT = Path(__file__).resolve().parents[2]   # docs/report/seeds


class ReproduceError(ValueError):
    """Something wrong with a reproduce request: one sentence for the user."""


@dataclass
class ReproduceOptions:
    """What `cli.py reproduce` was asked (its options, by the same names)."""
    out: str = "report"
    retrain: bool = False
    seeds: int = 1
    seed_list: str | None = None
    agents: str | None = None
    train_only: bool = False
    from_agents: str | None = None
    ray: str | None = None          # None: no Ray; "": a local Ray; else the cluster's address
    steps_scale: float = 1.0
    seed: int = 0
    quick: bool = False
    env: list[str] | None = None    # AGENT=ID
    progress: bool = True           # bars and log lines on stderr


def env_choices(items, names) -> dict[str, str]:
    """--env AGENT=ID (repeatable) -> {agent: environment id}. reproduce runs the shipped agents, each naming its
    own environment, so a choice is per agent; one sentence for anything else."""
    out = {}
    for item in items or []:
        name, sep, env = (part.strip() for part in str(item).partition("="))
        if not sep or not name or not env:
            raise ReproduceError(f"reproduce runs several agents, each in its own environment: --env expects AGENT=ID "
                                 f"(e.g. cartpole-dt=CartPole-v1), for an agent that names no environment or one this "
                                 f"machine cannot make; got '{item}'.")
        if name not in names:
            raise ReproduceError(f"--env {item}: reproduce uses no agent named '{name}'; its agents are "
                                 f"{', '.join(names)}.")
        if out.get(name, env) != env:
            raise ReproduceError(f"--env gives {name} two environments ({out[name]} and {env}); give one.")
        out[name] = env
    return out


def agent_in_env(name: str, agent, chosen: dict):
    """The agent acting where --env AGENT=ID put it: a variant (models.env_choice.with_env) for an agent that names no
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
        raise ReproduceError(f"--env {name}={env}: {name} already acts in {agent.config.env_id}; --env applies only to "
                             "an agent that names no environment or one this machine cannot make.")
    try:
        return with_env(agent, env, name=f"--env {name}={env}")
    except AgentError as e:
        raise ReproduceError(str(e)) from None


def int_list(text: str, flag: str) -> list[int]:
    try:
        out = [int(t) for t in str(text).split(",") if t.strip()]
    except ValueError:
        out = []
    if not out or min(out) < 0:
        raise ReproduceError(f"{flag} expects comma-separated integers >= 0, e.g. 0,1,2; got '{text}'.")
    return sorted(set(out))


def reproduce_pieces(options: ReproduceOptions):
    """The training seeds and, with retrain or from_agents, {(agent, seed): checkpoint directory}
    (analysis/research/seed_runs.py: pieces trained now, in this process or as Ray tasks, or saved earlier); None for
    the shipped agents. Every contradiction is one sentence before anything trains."""
    from analysis.research.seed_runs import SeedRunError, agent_checkpoints, findings_agents

    o = options
    if not o.retrain:
        for flag, given in (("--ray", o.ray is not None), ("--agents", o.agents), ("--train-only", o.train_only),
                            ("--steps-scale", o.steps_scale != 1.0)):
            if given:
                raise ReproduceError(f"{flag} applies to training: add --retrain (or drop {flag}).")
        if o.seed_list and not o.from_agents:
            raise ReproduceError("--seed-list chooses training seeds: add --retrain or --from-agents DIR.")
    if o.train_only and o.from_agents:
        raise ReproduceError("--train-only stops before the findings, so --from-agents (checkpoints for the findings) "
                             "has nothing to do; drop one of them.")
    if o.retrain and o.from_agents and not o.agents:
        raise ReproduceError("--retrain with --from-agents DIR trains the --agents you name and takes the rest from "
                             "DIR; name them with --agents A,B (or drop --retrain to use DIR alone).")
    if not o.steps_scale > 0:
        raise ReproduceError(f"--steps-scale must be > 0, got {o.steps_scale}.")
    seeds = int_list(o.seed_list, "--seed-list") if o.seed_list else list(range(o.seeds))
    if not (o.retrain or o.from_agents):
        return seeds, None
    train = ([a.strip() for a in o.agents.split(",") if a.strip()] if o.agents
             else findings_agents() if o.retrain else [])
    if o.agents is not None and not train:
        raise ReproduceError("--agents expects comma-separated recipe names, e.g. cartpole-dt,pendulum-dt.")
    try:
        return seeds, agent_checkpoints([] if o.train_only else findings_agents(), seeds, Path(o.out), train=train,
                                        from_agents=o.from_agents, use_ray=o.ray is not None,
                                        ray_address=o.ray or None, steps_scale=o.steps_scale, progress=o.progress)
    except SeedRunError as e:
        raise ReproduceError(str(e)) from None


def pieces_text(options: ReproduceOptions, seeds) -> str:
    """The report's line on where the agents came from."""
    o = options
    text = (f"{seeds[0]}..{seeds[-1]}" if len(seeds) > 1 and seeds == list(range(seeds[0], seeds[-1] + 1))
            else ",".join(map(str, seeds)))
    if o.retrain and not o.from_agents:
        return f"agents retrained with seeds {text}"
    if not o.retrain:
        return f"agents trained earlier with seeds {text} (checkpoints from {o.from_agents})"
    return f"{o.agents} retrained and the other agents trained earlier ({o.from_agents}), seeds {text}"


def reproduce_report(options: ReproduceOptions, log: Callable[[str], None] | None = None) -> dict:
    """Run the findings as `options` ask and write the report into options.out. `log` hears progress lines
    (default: none). Returns {"findings": [Finding] pooled over the seeds, "runs": [[Finding] per seed measured
    here], "paths": the report's files, "seconds"}; with train_only, {"trained": [{agent, seed, path}], "logs",
    "seconds"} once the pieces are saved. Every contradiction in the request is one sentence (ReproduceError)
    before anything trains or runs."""
    from analysis.research.findings import read_seed_files, write_seed_file
    from analysis.research.registration import checkpoint_hash, git_head, seed_file_note
    from analysis.research.report import write_report
    from analysis.research.reproduce import (AGENTS, NotProvided, checkout_hashes, command_line, describe_seeds,
                                             pool_runs, registry, run_all, seed_results)
    from models import load_agent
    from models.recipes import recipe_data

    o = options
    log = log or (lambda m: None)
    if o.seeds < 1:
        raise ReproduceError(f"--seeds must be at least 1, got {o.seeds}.")
    chosen = env_choices(o.env, tuple(dict.fromkeys((*AGENTS, *(a for f in registry().findings for a in f.agents)))))
    shipped = {}
    for name in chosen:   # checked before anything runs; a retrained agent has its shipped variant's spaces and env
        path = AGENT_DIR / name
        if path.is_dir():
            shipped[name] = agent_in_env(name, load_agent(path), chosen)
    data = {}

    def dataset(name):
        if name not in data:
            data[name] = recipe_data(name)   # a shipped dataset, or a generated one (envs.behaviour.DATA_RECIPES)
        return data[name]

    t0 = time.perf_counter()
    seeds, checkpoints = reproduce_pieces(o)   # retrain (ray, agents, ...) or from_agents; else None
    if o.train_only:
        trained = [{"agent": n, "seed": k, "path": str(p)} for (n, k), p in checkpoints.items()]
        return {"trained": trained, "logs": str(Path(o.out) / "logs"), "seconds": round(time.perf_counter() - t0, 1)}
    hashes = checkout_hashes(registry())
    runs = []
    for seed in (seeds if checkpoints is not None else [o.seed]):
        if checkpoints is not None:   # trained agents per seed (now, or earlier): the findings run on them here
            log(f"seed {seed}: the findings on the agents trained with seed {seed}")
            loaded = {}

            def load(name, seed=seed, loaded=loaded):
                if name not in loaded:
                    if (name, seed) not in checkpoints:
                        raise NotProvided(f"the findings asked for {name} seed {seed}, which --retrain / --from-agents "
                                          "did not provide.")
                    loaded[name] = agent_in_env(name, load_agent(checkpoints[(name, seed)]), chosen)
                return loaded[name]
        else:
            def load(name):
                if name in shipped:
                    return shipped[name]
                return load_agent(AGENT_DIR / name)
        try:
            runs.append(run_all(load, dataset, seed=seed, quick=o.quick, log=log,
                                training_seed=seed if checkpoints is not None else 0))
        except NotProvided as e:
            raise ReproduceError(str(e)) from None
        if checkpoints is not None:   # each seed's raw values: seeds run piece by piece, committed in docs/report/seeds
            results = seed_results(runs[-1])
            for f in runs[-1]:
                results[f.id]["agents"] = [a for a in (f.spec.agents if f.spec else ()) if (a, seed) in checkpoints]
            write_seed_file(Path(o.out) / "seeds", seed, results, command_line(o), o.quick,
                            agents=f"trained with seed {seed}", code_commit=git_head(),
                            checkpoints={n: checkpoint_hash(p) for (n, k), p in checkpoints.items() if k == seed},
                            hashes={k: hashes[k] for k in ("code", "recipes")})
    done = dict(zip(seeds if checkpoints is not None else [0], runs))
    others = ({k: {"findings": seed_results(r)} for k, r in list(done.items())[1:]} if checkpoints is not None else
              read_seed_files(ROOT / "docs" / "report" / "seeds", quick=o.quick, skip={0}, log=log))
    for doc in others.values():   # seed files made at another code commit: one sentence each, in the report
        doc["note"] = seed_file_note(doc, hashes) if doc.get("format") else None
    findings = pool_runs(runs[0], others, seed=o.seed)
    agents = pieces_text(o, seeds) if checkpoints is not None else "the shipped agents"
    if others and checkpoints is None:
        agents += f", pooled with seeds {', '.join(map(str, sorted(others)))} from docs/report/seeds"
    if chosen:
        agents += " (environments chosen with --env: " + ", ".join(f"{k} in {v}" for k, v in chosen.items()) + ")"
    meta = {"agents": agents, "envs": chosen, "seconds": round(time.perf_counter() - t0, 1), "quick": o.quick,
            "seeds": describe_seeds(done, others, "measured here")}
    paths = write_report(findings, Path(o.out), runs if len(runs) > 1 else None, meta)
    return {"findings": findings, "runs": runs, "paths": paths, "seconds": meta["seconds"]}
