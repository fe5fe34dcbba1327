"""Small agents in DTI's own format (jbloomAus/DecisionTransformerInterpretability), trained here, for the check that
seqlens' DTI path (`cli.py convert-agent --from dti` + models/rollout) acts as DTI's evaluation does
(tests/test_dti_protocol.py). Nothing can be downloaded, so the agents are trained on this machine:

    python -m bench.dti_agents build [memory|dynamic-obstacles ...]   # writes tests/data/dti_*.pt (CPU, minutes)
    python -m bench.dti_agents eval [--episodes 100]                  # DTI's protocol vs seqlens' rollout, per episode

The model is tests/dti_reference.py's DTIReference (DTI's TrajectoryTransformer / DecisionTransformer with its
TransformerLens parameter names), saved as DTI's store_transformer_model saves it. Training follows DTI's
src/decision_transformer/train.py where it matters for the file: cross-entropy on every non-pad action prediction
(actions fed one step short, the pad action n_actions), AdamW with weight decay on the matrices only
(utils.get_optim_groups), a warm-up then cosine learning rate. One deliberate difference: DTI samples windows from a
random start and pads a short one with return-to-go 0, which its own evaluation never shows the model; here every
training window is one that DTI's evaluation builds (the K steps ending at step t, the steps before the episode's
start left-padded with zero observations, pad actions, the episode's initial return-to-go and timestep 0), so what
the agents learnt is what the protocol check runs.
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))   # the reference modules live beside the tests that use them

import dti_protocol_reference as protocol  # noqa: E402
import dti_reference as dti  # noqa: E402

DATA = ROOT / "tests" / "data"
MEMORY_ID = "MiniGrid-MemoryS7FixedStart-v0"
DYNOBS_ID = "MiniGrid-Dynamic-Obstacles-8x8-v0"

# name -> file, env_id, one_hot_obs, max_steps, n_actions (the env's), model_config overrides, training and data
# settings
AGENTS = {
    "memory": dict(file="dti_memory.pt", env_id=MEMORY_ID, one_hot=True, max_steps=200, n_actions=7,
                   model=dict(d_model=64, n_heads=2, d_mlp=128, n_layers=2, n_ctx=20, layer_norm="LN"),
                   train=dict(steps=6000, batch=128, lr=3e-3, warmup=200, weight_decay=1e-3, seed=0),
                   data=dict(n_episodes=1500, seed=0, p_match=0.9, eps=0.05)),
    "dynamic-obstacles": dict(file="dti_dynamic_obstacles.pt", env_id=DYNOBS_ID, one_hot=False, max_steps=256,
                              n_actions=3,
                              model=dict(d_model=64, n_heads=2, d_mlp=128, n_layers=1, n_ctx=8, layer_norm="LN"),
                              train=dict(steps=3000, batch=128, lr=1e-3, warmup=200, weight_decay=1e-3, seed=0),
                              data=dict(n_episodes=1000, seed=0, eps=0.1)),
}


def keep_episodes(cols: dict, keep: np.ndarray) -> dict[str, np.ndarray]:
    """The per-step arrays of the episodes marked `keep` (per-episode arrays cut alike)."""
    starts = np.asarray(cols["episode_starts"])
    ends = np.append(starts[1:], len(cols["actions"]))
    steps = np.concatenate([np.arange(s, e) for s, e, k in zip(starts, ends, keep) if k])
    out = {k: v[steps] for k, v in cols.items() if len(v) == len(cols["actions"])}
    out["episode_starts"] = np.concatenate([[0], np.cumsum((ends - starts)[keep])[:-1]]).astype(np.int64)
    out.update({k: v[keep] for k, v in cols.items() if k in ("cue", "matched")})
    return out


def memory_layouts(n_episodes: int, seed: int) -> np.ndarray:
    """Per episode of memory_episodes(n_episodes, seed): True where the key is the top end's object."""
    from envs.minigrid_dti import make_dti_env

    env = make_dti_env(MEMORY_ID, render_mode=None)
    top = []
    for e in range(n_episodes):
        env.reset(seed=int(seed * 1_000_003 + e))
        u = env.unwrapped
        top.append((u.target_obj == "key") == (u.target_pos == "top"))
    env.close()
    return np.asarray(top)


def episodes(name: str) -> dict[str, np.ndarray]:
    spec = AGENTS[name]
    if name == "memory":
        from envs.memory_expert import memory_episodes

        data = dict(spec["data"])
        keep_other = data.pop("keep_ball_on_top", 1.0)
        cols = memory_episodes(max_steps=spec["max_steps"], **data)
        if keep_other < 1.0:
            rng = np.random.default_rng(data["seed"])
            key_top = memory_layouts(data["n_episodes"], data["seed"])
            cols = keep_episodes(cols, key_top | (rng.random(len(key_top)) < keep_other))
        return cols
    from envs.dynamic_obstacles_expert import dynamic_obstacles_episodes

    return dynamic_obstacles_episodes(max_steps=spec["max_steps"], **spec["data"])


class Windows:
    """Every step t of every episode as the K-step window DTI's evaluation builds when acting at t."""

    def __init__(self, cols: dict, K: int, one_hot: bool):
        from envs.minigrid_dti import one_hot as to_one_hot

        image = cols["image"]
        self.obs = torch.as_tensor(np.concatenate([to_one_hot(image) if one_hot else image,
                                                   np.zeros((1, *image.shape[1:3], 20 if one_hot else 3), np.uint8)]))
        N = len(cols["actions"])
        starts = np.asarray(cols["episode_starts"])
        ends = np.append(starts[1:], N)
        ep = np.repeat(np.arange(len(starts)), ends - starts)
        first = starts[ep]
        rtg = np.zeros(N, np.float32)
        for s, e in zip(starts, ends):
            rtg[s:e] = np.cumsum(cols["rewards"][s:e][::-1])[::-1]
        idx = np.arange(N)[:, None] - np.arange(K - 1, -1, -1)[None]          # [N, K] oldest first
        pad = idx < first[:, None]
        self.idx = torch.as_tensor(np.where(pad, N, idx))                      # row N: the zero observation
        self.pad = torch.as_tensor(pad)
        self.actions = torch.as_tensor(np.append(cols["actions"], 0))
        self.rtg = torch.as_tensor(np.append(rtg, 0))
        self.first_rtg = torch.as_tensor(rtg[first])
        self.t = torch.as_tensor(np.where(pad, 0, idx - first[:, None]))
        self.N, self.K = N, K

    def batch(self, rows: torch.Tensor, n_actions: int):
        idx, pad = self.idx[rows], self.pad[rows]
        states = self.obs[idx].float()
        actions = torch.where(pad, n_actions, self.actions[idx])
        rtg = torch.where(pad, self.first_rtg[rows, None], self.rtg[idx])
        return states, actions, rtg[..., None], self.t[rows][..., None]


def init_weights(model: dti.DTIReference, seed: int) -> None:
    """TransformerLens' initialisation for its matrices (normal, std 0.8 / sqrt(d_model)), zero biases, layer norms
    at identity; DTI's embeddings and heads keep torch's own initialisation (seeded by the caller)."""
    torch.manual_seed(seed + 1)
    std = 0.8 / math.sqrt(model.cfg["d_model"])
    with torch.no_grad():
        for name, p in model.named_parameters():
            last = name.rsplit(".", 1)[-1]
            if name.startswith("transformer."):
                if last.startswith("W_"):
                    p.normal_(0, std)
                elif last == "w":
                    p.fill_(1.0)
                else:
                    p.zero_()


def optimizer(model, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """DTI's get_optim_groups: weight decay on TransformerLens matrices and non-embedding Linear weights."""
    decay, rest = [], []
    for name, p in model.named_parameters():
        last = name.rsplit(".", 1)[-1]
        is_matrix = last.startswith("W_") and last != "W_pos" or (last == "weight" and "embedding" not in name)
        (decay if is_matrix else rest).append(p)
    return torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}],
                             lr=lr)


def train(name: str, cols: dict | None = None, log=print, check=None) -> tuple[dti.DTIReference, dict, dict]:
    """AGENTS[name] trained; check(step, model, model_config, env_config), if given, runs every 1,000 steps."""
    spec = AGENTS[name]
    cols = episodes(name) if cols is None else cols
    mc = dti.model_config(**spec["model"])
    ec = dti.environment_config(spec["env_id"], spec["max_steps"], spec["one_hot"])
    K = 1 + mc["n_ctx"] // 3
    n_actions = spec["n_actions"]   # the env's action space (DTI's memory env keeps MiniGrid's 7; the behaviour uses 3)
    win = Windows(cols, K, spec["one_hot"])
    shape = tuple(win.obs.shape[1:])
    tr = spec["train"]
    torch.manual_seed(tr["seed"])   # torch's own initialisation of the embeddings and heads, seeded
    model = dti.DTIReference(mc, n_actions, shape, spec["max_steps"])
    init_weights(model, tr["seed"])
    opt = optimizer(model, tr["lr"], tr["weight_decay"])
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / tr["warmup"]) * 0.5 * (
        1 + math.cos(math.pi * min(1.0, s / tr["steps"]))))
    g = torch.Generator().manual_seed(tr["seed"])
    model.train()
    t0 = time.time()
    for step in range(tr["steps"]):
        rows = torch.randint(0, win.N, (tr["batch"],), generator=g)
        states, actions, rtg, ts = win.batch(rows, n_actions)
        _, logits, _ = model(states, actions[:, :-1, None] if K > 1 else None, rtg, ts)
        real = actions != n_actions
        loss = F.cross_entropy(logits[real], actions[real])
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 500 == 0 or step == tr["steps"] - 1:
            log(f"{name} step {step} loss {loss.item():.4f} ({time.time() - t0:.0f}s)")
        if check is not None and step and step % 1000 == 0:
            model.eval()
            check(step, model, mc, ec)
            model.train()
    return model.eval(), mc, ec


def summary(eps) -> str:
    r = np.array([e.ret for e in eps])
    ends = [e.end for e in eps]
    out = f"mean return {r.mean():.3f}, success {np.mean(r > 0):.2f}, negative {np.mean(r < 0):.2f}"
    if any(ends):
        out += f", match {ends.count('match') / len(eps):.2f}, wrong {ends.count('wrong') / len(eps):.2f}"
    return out


def build(names, log=print) -> None:
    DATA.mkdir(parents=True, exist_ok=True)
    for name in names:
        model, mc, ec = train(name, log=log)
        path = DATA / AGENTS[name]["file"]
        dti.checkpoint(path, model, ec, mc)
        for target in (1.0, 0.0):
            log(f"{name} target {target:g}: {summary(protocol.evaluate(model, mc, ec, range(100), target))}")
        log(f"wrote {path} ({path.stat().st_size:,} bytes)")


def convert(path: Path, workdir: Path):
    """The agent as `cli.py convert-agent --from dti` writes it, loaded."""
    import cli
    from models import load_agent

    out = workdir / path.stem
    if cli.main(["convert-agent", "--from", "dti", str(path), "--out", str(out)]) != 0:
        raise SystemExit(f"convert-agent failed on {path}")
    return load_agent(out)


def seqlens_returns(agent, seeds, target: float) -> np.ndarray:
    """seqlens' rollout (models/rollout.run_episodes, greedy) of a converted agent on these reset seeds."""
    from models.rollout import run_episodes

    seeds = list(seeds)
    return run_episodes(agent, len(seeds), [target] * len(seeds), env_seeds=seeds, sample=False).returns


def compare(n_episodes: int = 100, log=print) -> bool:
    """DTI's protocol (tests/dti_protocol_reference.py) against seqlens' path, episode by episode."""
    import tempfile

    same = True
    with tempfile.TemporaryDirectory() as tmp:
        for name, spec in AGENTS.items():
            path = DATA / spec["file"]
            ref, mc, ec = protocol.load(path)
            agent = convert(path, Path(tmp))
            for target in (1.0, 0.0):
                eps = protocol.evaluate(ref, mc, ec, range(n_episodes), target)
                ours = seqlens_returns(agent, range(n_episodes), target)
                equal = np.array_equal(np.array([e.ret for e in eps]), ours)
                same &= equal
                log(f"{name} target {target:g}: DTI protocol {summary(eps)}; seqlens mean return {ours.mean():.3f}; "
                    f"per-episode returns {'equal' if equal else 'DIFFER'} over {n_episodes} seeds")
    return same


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build")
    b.add_argument("names", nargs="*", default=list(AGENTS), choices=list(AGENTS))
    e = sub.add_parser("eval")
    e.add_argument("--episodes", type=int, default=100)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    if args.cmd == "build":
        build(args.names)
        return 0
    return 0 if compare(args.episodes) else 1


if __name__ == "__main__":
    raise SystemExit(main())
