"""Scripted behaviour policies with a per-episode quality knob, and `collect()` to make Datasets.

Return-conditioned models only show conditioning on data whose returns span low to near-optimal
with many episodes everywhere in between, so each knob's distribution below was tuned for a spread
histogram (each fifth of the [min, max] return range holds >= ~10% of episodes).
Policies read the true simulator state (`env.unwrapped`), so a masked variant gets the same good
controller while the dataset records only what the masked observation shows.
"""
from __future__ import annotations

import sys

import numpy as np
from tqdm import tqdm

from trajectories.dataset import Dataset

from . import ACT_NAMES, ACTION_LABELS, ENV_ALIASES, OBS_NAMES, make, resolve_env_id
from .delayed import DELAYED
from .key_to_door import MOVES

# Weak cart-position gains: at epsilon=0 it holds 500 steps (1000/1000 seeds), while noise makes the
# cart drift out slowly, so return falls smoothly with epsilon instead of by a lucky/unlucky streak.
CARTPOLE_GAINS = np.array([0.05, 0.1, 1.0, 1.0])  # push right when gains . (x, x_dot, theta, theta_dot) > 0
CARTPOLE_EPSILON = (0.25, 0.5)  # below 0.25 this controller shrugs the noise off (all 500s)
PENDULUM_EPSILON = (0.0, 0.65)  # from 0.6 on it mostly stays near the bottom (~ -1600 to -1900)
KEYDOOR_RANDOM_MOVE = 0.3
# Reacher: the distance (m) the fingertip stops short of the target. 0 with probability REACHER_EXACT, else
# uniform on REACHER_STOP_SHORT. Return falls ~45 per metre up to ~0.35 m (-4 -> -14 mean), then flattens:
# further aims lie outside the arm's reach (0.21 m). The point mass at 0 fills the top fifth of the range.
REACHER_EXACT = 0.2
REACHER_STOP_SHORT = (0.0, 0.6)
REACHER_LINKS = (0.1, 0.11)  # upper arm, forearm (m): body1 at 0.1 from the shoulder, the fingertip 0.11 further
REACHER_GAINS = (0.3, 0.05)  # joint PD: torque = kp * angle error - kd * joint velocity (best of a grid, mean ~ -3.9)

DELAYED_IDS = {base: d for d, base in DELAYED.items()}   # environment -> its delayed-reward variant

SAMPLE_DATASETS = {  # alias: (env id, episodes, seed); 45-60k steps each, every one < 2 MB compressed
    "cartpole": ("CartPole-v1", 220, 0),
    "pendulum": ("Pendulum-v1", 300, 0),
    # same seeds as the full envs: identical trajectories, only the recorded observation differs
    "masked-cartpole": ("seqlens/MaskedCartPole-v1", 220, 0),
    "masked-pendulum": ("seqlens/MaskedPendulum-v1", 300, 0),
    "keydoor": ("seqlens/KeyToDoor-v0", 3000, 0),
    "reacher": ("Reacher-v5", 900, 0),  # 50-step episodes: 45k steps
}


class CartPoleBehaviour:
    """Linear state-feedback controller; with probability epsilon (per episode) a uniform random action."""

    name = "cartpole-linear-epsilon"

    def knobs(self, rng) -> dict:
        return {"epsilon": float(rng.uniform(*CARTPOLE_EPSILON))}

    def act(self, env, knobs, rng):
        if rng.random() < knobs["epsilon"]:
            return int(rng.integers(2))
        return int(CARTPOLE_GAINS @ env.unwrapped.state > 0)


def pendulum_torque(state) -> float:
    """Energy-pumping swing-up, PD stabilisation near the top (mean return ~ -150 from random starts)."""
    theta, theta_dot = state
    theta = (theta + np.pi) % (2 * np.pi) - np.pi  # 0 = upright
    if abs(theta) < 0.6:  # within reach of the 2 Nm torque limit: hold it up
        u = -(10.0 * theta + 2.0 * theta_dot)
    else:  # theta'' = 15 sin(theta) + 3u, so E = theta_dot^2/2 + 15 cos(theta) is 15 upright at rest
        energy = 0.5 * theta_dot ** 2 + 15.0 * np.cos(theta)
        u = 10.0 * (15.0 - energy) * (1.0 if theta_dot >= 0 else -1.0)
    return float(np.clip(u, -2.0, 2.0))


class PendulumBehaviour:
    """The swing-up controller; with probability epsilon (per episode) the torque is reversed.

    Reversed torques (mistakes) rather than uniform random ones: at high noise they keep the pendulum
    down consistently, so both ends of the return range are well populated (uniform random torques
    left the lowest and highest fifths at ~5-7% of episodes).
    """

    name = "pendulum-swingup-reversal"

    def knobs(self, rng) -> dict:
        return {"epsilon": float(rng.uniform(*PENDULUM_EPSILON))}

    def act(self, env, knobs, rng):
        u = pendulum_torque(env.unwrapped.state)
        if rng.random() < knobs["epsilon"]:
            u = -u
        return np.array([u], dtype=np.float32)


class KeyDoorBehaviour:
    """Seek-or-avoid: per episode, independently head for or away from the key (phase 1) and the door
    (phase 3), each 50/50, with 30% random moves; random in the distractor room."""

    name = "keydoor-seek-or-avoid"

    def knobs(self, rng) -> dict:
        return {"seek_key": bool(rng.random() < 0.5), "seek_door": bool(rng.random() < 0.5)}

    def act(self, env, knobs, rng):
        e = env.unwrapped
        if e.phase == 1 or (e.phase == 0 and e.has_key) or rng.random() < KEYDOOR_RANDOM_MOVE:
            return int(rng.integers(4))
        target, seek = (e.key, knobs["seek_key"]) if e.phase == 0 else (e.door, knobs["seek_door"])
        here = np.abs(e.agent - target).sum()
        after = np.abs(np.clip(e.agent + MOVES, 0, e.size - 1) - target).sum(axis=1)
        good = np.flatnonzero(after < here) if seek else np.flatnonzero(after > here)
        if len(good) == 0:  # cornered while avoiding: at least do not get closer
            good = np.flatnonzero(after >= here)
        return int(rng.choice(good))


class KeyDoorRandomBehaviour:
    """Uniformly random actions at every step (the DT paper's Key-to-Door data: random-walk trajectories)."""

    name = "uniform-random"

    def knobs(self, rng) -> dict:
        return {}

    def act(self, env, knobs, rng):
        return int(rng.integers(env.action_space.n))


def _toward(e, target, seek: bool, rng) -> int:
    """A move that brings the agent closer to `target` (seek) or not closer (avoid), chosen at random among them."""
    here = np.abs(e.agent - target).sum()
    after = np.abs(np.clip(e.agent + MOVES, 0, e.size - 1) - target).sum(axis=1)
    good = np.flatnonzero(after < here) if seek else np.flatnonzero(after > here)
    if len(good) == 0:  # cornered while avoiding (or standing on it): at least do not get closer
        good = np.flatnonzero(after >= here)
    return int(rng.choice(good))


class KeyDoorCueBehaviour:
    """The cue variant's scripted data: per episode seek or avoid the key (50/50) and, in phase 3, head for the
    door of the key's colour, the other door, or away from both (1/3 each), with 30% random moves; random in the
    distractor room. Reads the true state (the cue) like every scripted policy here."""

    name = "keydoor-cue-seek-or-avoid"

    def knobs(self, rng) -> dict:
        return {"seek_key": bool(rng.random() < 0.5), "door": str(rng.choice(["matching", "other", "avoid"]))}

    def act(self, env, knobs, rng):
        e = env.unwrapped
        if e.phase == 1 or (e.phase == 0 and e.has_key) or rng.random() < KEYDOOR_RANDOM_MOVE:
            return int(rng.integers(4))
        if e.phase == 0:
            return _toward(e, e.key, knobs["seek_key"], rng)
        if knobs["door"] == "avoid":
            return _toward(e, e.doors[0] if rng.random() < 0.5 else e.doors[1], False, rng)
        door = e.cue if knobs["door"] == "matching" else 1 - e.cue
        return _toward(e, e.doors[door], True, rng)


def reacher_torque(env, stop_short: float = 0.0) -> np.ndarray:
    """Joint PD toward the inverse kinematics of an aim point `stop_short` metres from the target, on the
    fingertip's side of it (0: the target itself); of the two elbow solutions, the one nearer the arm's joints."""
    e = env.unwrapped
    tip, target = e.get_body_com("fingertip")[:2], e.get_body_com("target")[:2]
    away = tip - target
    aim = target + stop_short * away / max(float(np.linalg.norm(away)), 1e-9)
    q, q_dot = e.data.qpos[:2], e.data.qvel[:2]
    l1, l2 = REACHER_LINKS
    cos_elbow = np.clip((aim @ aim - l1 ** 2 - l2 ** 2) / (2 * l1 * l2), -1.0, 1.0)  # beyond reach: arm straight
    best = None
    for sign in (1.0, -1.0):
        elbow = sign * np.arccos(cos_elbow)
        shoulder = np.arctan2(aim[1], aim[0]) - np.arctan2(l2 * np.sin(elbow), l1 + l2 * np.cos(elbow))
        error = np.array([(shoulder - q[0] + np.pi) % (2 * np.pi) - np.pi, elbow - q[1]])
        if best is None or np.abs(error).sum() < np.abs(best).sum():
            best = error
    kp, kd = REACHER_GAINS
    return np.clip(kp * best - kd * q_dot, -1.0, 1.0).astype(np.float32)


class ReacherBehaviour:
    """Inverse kinematics + joint PD to a point stop_short metres short of the target (per episode: 0 with
    probability 0.2, else uniform in [0, 0.6]); the fingertip then holds there, so return falls with stop_short."""

    name = "reacher-ik-stop-short"

    def knobs(self, rng) -> dict:
        exact = rng.random() < REACHER_EXACT
        short = float(rng.uniform(*REACHER_STOP_SHORT))
        return {"stop_short": 0.0 if exact else short}

    def act(self, env, knobs, rng):
        return reacher_torque(env, knobs["stop_short"])


BEHAVIOURS = {
    "CartPole-v1": CartPoleBehaviour,
    "seqlens/MaskedCartPole-v1": CartPoleBehaviour,
    "Pendulum-v1": PendulumBehaviour,
    "seqlens/MaskedPendulum-v1": PendulumBehaviour,
    "seqlens/KeyToDoor-v0": KeyDoorBehaviour,
    "Reacher-v5": ReacherBehaviour,
    "seqlens/KeyToDoorCue-v0": KeyDoorCueBehaviour,
}
# issue 24: behaviours other than an environment's default, named for collect() / `cli.py make-data --env NAME`:
# name -> (environment id, behaviour). The DT paper's Key-to-Door data is uniformly random (its Table 6).
NAMED_BEHAVIOURS = {
    "keydoor-random": ("seqlens/KeyToDoor-v0", KeyDoorRandomBehaviour),
    "keydoor-cue": ("seqlens/KeyToDoorCue-v0", KeyDoorCueBehaviour),
    "keydoor-cue-random": ("seqlens/KeyToDoorCue-v0", KeyDoorRandomBehaviour),
}

# issue 24: datasets the findings' recipes train on that are generated, not shipped (`recipe_dataset`; or
# `cli.py make-data --env BEHAVIOUR --episodes N --seed 0 [--delayed-reward]` writes the same episodes to a file).
# name -> (behaviour name or env alias, episodes, seed, delayed). One seed for 1K and 10K: collect's episode order
# makes the 1K data the first 1,000 episodes of the 10K data, as "more data of the same behaviour" should be.
DATA_RECIPES = {
    "keydoor-random-1k": ("keydoor-random", 1000, 0, False),
    "keydoor-random-10k": ("keydoor-random", 10000, 0, False),
    "keydoor-cue-random-10k": ("keydoor-cue-random", 10000, 0, False),
    # the delayed-reward finding runs on dense rewards: Key-to-Door pays only on its last step already, so its
    # delayed data is the same data (tests/test_transforms.py checks it); CartPole pays 1 per step
    "cartpole-delayed": ("cartpole", 220, 0, True),
}


def behaviour_env_id(env: str) -> str:
    """The environment id collect(env, ...) records in: a NAMED_BEHAVIOURS name's, else resolve_env_id(env)."""
    named = NAMED_BEHAVIOURS.get(str(env).strip().lower())
    try:
        return named[0] if named else resolve_env_id(env)
    except ValueError as e:   # one sentence that also names the behaviours make-data knows
        raise ValueError(f"{str(e).rstrip('.')}; or a named behaviour: {', '.join(NAMED_BEHAVIOURS)}.") from None


def collect(env: str, n_episodes: int, seed: int = 0, progress: bool = True) -> Dataset:
    """Roll out the env's scripted behaviour policy for `n_episodes`; deterministic given `seed`. `env`: an
    environment (its default behaviour) or a NAMED_BEHAVIOURS name ("keydoor-random": uniformly random actions).

    One random stream drives env resets, knobs and actions in episode order, so a longer collection
    with the same seed starts with exactly the episodes of a shorter one.
    """
    named = NAMED_BEHAVIOURS.get(str(env).strip().lower())
    env_id = behaviour_env_id(env)
    if int(n_episodes) < 1:
        raise ValueError(f"n_episodes must be at least 1, got {n_episodes}.")
    if env_id not in BEHAVIOURS:
        raise ValueError(f"no scripted behaviour policy for {env_id} (make-data knows: "
                         f"{', '.join([a for a, e in ENV_ALIASES.items() if e in BEHAVIOURS] + list(NAMED_BEHAVIOURS))}).")
    behaviour = named[1]() if named else BEHAVIOURS[env_id]()
    rng = np.random.default_rng(seed)
    sim = make(env_id)
    obs, acts, rews, terms, truncs, starts = [], [], [], [], [], []
    knob_log: dict[str, list] = {}
    key_taken = []
    for _ in tqdm(range(int(n_episodes)), desc=f"collect {env_id}", unit="ep", file=sys.stderr, disable=not progress):
        knobs = behaviour.knobs(rng)
        for k, v in knobs.items():
            knob_log.setdefault(k, []).append(v)
        starts.append(len(rews))
        o, info = sim.reset(seed=int(rng.integers(2 ** 31)))
        done = False
        while not done:
            a = behaviour.act(sim, knobs, rng)
            o_next, r, terminated, truncated, info = sim.step(a)
            obs.append(o); acts.append(a); rews.append(r); terms.append(terminated); truncs.append(truncated)
            o, done = o_next, terminated or truncated
        if "has_key" in info:
            key_taken.append(bool(info["has_key"]))
        if "cue" in info:
            knob_log.setdefault("cue", []).append(int(info["cue"]))   # hidden after phase 1: for analyses
    sim.close()
    metadata = {"policy": behaviour.name, "policy_doc": " ".join((behaviour.__doc__ or "").split()), "seed": seed, **knob_log}
    if key_taken:
        metadata["key_taken"] = key_taken  # hidden state, kept for analyses of memory
    if env_id in ACTION_LABELS:
        metadata["action_labels"] = ACTION_LABELS[env_id]
    actions = np.asarray(acts, dtype=np.int64) if env_id in ACTION_LABELS else np.asarray(acts, dtype=np.float32)
    return Dataset(np.asarray(obs, dtype=np.float32), actions, np.asarray(rews, dtype=np.float32),
                   np.asarray(terms, dtype=bool), np.asarray(truncs, dtype=bool), np.asarray(starts, dtype=np.int64),
                   obs_names=list(OBS_NAMES[env_id]), act_names=list(ACT_NAMES[env_id]),
                   n_actions=sim.action_space.n if env_id in ACTION_LABELS else None,
                   env_id=env_id, source=f"collect({env_id!r}, {n_episodes}, seed={seed})", metadata=metadata)


# Shipped datasets with shaped observations, built by their own expert (not `collect`): alias -> (builder, episodes,
# seed). `memory`: DTI's fixed-start Memory env, 7x7x20 one-hot MiniGrid views + direction + mission
# (envs/memory_expert.py). 250 episodes hold every (cue, layout, chosen end) many times over (the start is fixed).
SHAPED_SAMPLES = {"memory": ("memory_dataset", 250, 0)}   # 1.6 MB: every shipped dataset < 2 MB


def memory_dataset(n_episodes: int = 250, seed: int = 0, p_match: float = 0.7, eps: float = 0.05) -> Dataset:
    """`n_episodes` of envs/memory_expert.py's behaviour in MiniGrid-MemoryS7FixedStart-v0 as a Dataset: the 7x7x20
    one-hot uint8 views as observations, direction and mission as obs_extras (one mission, code 0), MiniGrid's action
    labels, env_id set (frames and live play use the env); per episode the cue and whether the chosen end matched it.
    One-hot, not the 3 codes: with codes the cue is object 5 (key) vs 6 (ball) in one input and memory-dt stayed at
    chance at the split (README, "The MiniGrid memory example")."""
    from .memory_expert import memory_episodes
    from .minigrid_dti import ACTION_LABELS as MINIGRID_ACTIONS, MISSION

    env_id = "MiniGrid-MemoryS7FixedStart-v0"
    cols = memory_episodes(n_episodes, seed=seed, p_match=p_match, eps=eps)
    n = len(cols["actions"])
    metadata = {"policy": "memory-expert", "policy_doc": f"shortest path to the matching end with probability "
                f"{p_match}, else to the other; each step a random left/right/forward with probability {eps}",
                "seed": seed, "cue": [str(c) for c in cols["cue"]], "matched": [bool(m) for m in cols["matched"]],
                "action_labels": list(MINIGRID_ACTIONS)}
    return Dataset(cols["image"], cols["actions"], cols["rewards"], cols["terminated"], cols["truncated"],
                   cols["episode_starts"], act_names=["action"], n_actions=len(MINIGRID_ACTIONS), env_id=env_id,
                   source=f"memory_dataset({n_episodes}, seed={seed})", metadata=metadata,
                   obs_extras={"direction": cols["direction"], "mission": np.zeros(n, np.int32)}, missions=[MISSION])


# issue 23: the shipped Atari example. Its stacks are stored deflated, not memory-mapped (`DEFLATED_SAMPLES`): 3,500
# 4x84x84 stacks are 99 MB raw but ~1 MB deflated (a stack repeats three of the previous one's frames 21 KB back,
# inside deflate's 32 KB window, so stacks cost little more than single frames would), and the file stays an
# ordinary frame-stack npz (obs_shape (4, 84, 84)) that every reader opens; the price is ~100 MB decoded on load.
SHAPED_SAMPLES["breakout"] = ("breakout_dataset", 16, 0)
DEFLATED_SAMPLES = {"breakout"}
BREAKOUT_MAX_STEPS = 250   # steps an episode may last (then truncated): keeps the dataset to a few thousand steps


def breakout_dataset(n_episodes: int = 16, seed: int = 0) -> Dataset:
    """`n_episodes` of envs/atari_expert.py's frame-reading Breakout policy (per episode a share eps ~ U(0, 1) of
    random actions) in seqlens/DTAtari-Breakout-v0 as a Dataset: the paper's uint8 4x84x84 frame stacks, Breakout's
    action labels, env_id set (frames, the player and live play remake the env); per episode eps and no-op count."""
    from .atari import ATARI_IDS
    from .atari_expert import breakout_episodes, stacks

    env_id = next(i for i, game in ATARI_IDS.items() if game == "Breakout")
    cols = breakout_episodes(n_episodes, seed=seed, max_steps=BREAKOUT_MAX_STEPS)
    metadata = {"policy": "breakout-tracker", "policy_doc": "moves the paddle under the ball read from the newest "
                "frame, FIRE when no ball is in play; per episode a share eps ~ U(0, 1) of steps uniform random",
                "seed": seed, "eps": [float(e) for e in cols["eps"]], "noops": [int(n) for n in cols["noops"]],
                "action_labels": list(ACTION_LABELS[env_id])}
    return Dataset(stacks(cols["frames"], cols["episode_starts"]), cols["actions"], cols["rewards"],
                   cols["terminated"], cols["truncated"], cols["episode_starts"], act_names=["action"],
                   n_actions=len(ACTION_LABELS[env_id]), env_id=env_id, source=f"breakout_dataset({n_episodes}, seed={seed})", metadata=metadata)


def recipe_dataset(name: str, episodes: int | None = None) -> Dataset:
    """The generated dataset DATA_RECIPES[name] (episodes: fewer, for quick runs: the recipe's first episodes)."""
    from trajectories.transforms import delayed_rewards

    if name not in DATA_RECIPES:
        raise ValueError(f"no generated dataset named {name!r} (expected one of {', '.join(DATA_RECIPES)}).")
    behaviour, n, seed, delayed = DATA_RECIPES[name]
    ds = collect(behaviour, n if episodes is None else min(int(episodes), n), seed=seed, progress=False)
    if delayed:
        ds = delayed_rewards(ds, env_id=DELAYED_IDS.get(ds.env_id))
    return ds
