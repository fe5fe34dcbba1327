"""envs/: registered environments, Key-to-Door known answers, behaviour data (fast: a few seconds)."""
import importlib
import os
import warnings

import gymnasium as gym
import numpy as np
import pytest

import envs
from envs import ENV_ALIASES, OBS_NAMES, resolve_env_id
from envs.behaviour import (BEHAVIOURS, CARTPOLE_GAINS, SAMPLE_DATASETS, collect, pendulum_torque)
from trajectories.dataset import Dataset

ALL_IDS = list(ENV_ALIASES.values())
CUSTOM_IDS = [i for i in ALL_IDS if i.startswith("seqlens/")]
UP, DOWN, LEFT, RIGHT = range(4)


# ---- registration and names ---------------------------------------------------------------------
def test_resolve_aliases_and_ids():
    for alias, env_id in ENV_ALIASES.items():
        assert resolve_env_id(alias) == env_id
        assert resolve_env_id(env_id) == env_id
    assert resolve_env_id("KeyDoor") == "seqlens/KeyToDoor-v0"
    with pytest.raises(ValueError, match="masked-cartpole") as err:
        resolve_env_id("acrobot")
    assert "acrobot" in str(err.value)


def test_reimport_is_silent():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        importlib.reload(envs)
        importlib.reload(envs)
    assert all(env_id in gym.registry for env_id in CUSTOM_IDS)


@pytest.mark.parametrize("env_id", ALL_IDS)
def test_spaces_and_obs_shapes(env_id):
    env = gym.make(env_id)
    obs, _ = env.reset(seed=0)
    assert obs.shape == env.observation_space.shape == (len(OBS_NAMES[env_id]),)
    # gymnasium's MuJoCo tasks (the shipped Reacher-v5) observe float64; collect() stores float32 like the rest
    assert obs.dtype == (np.float64 if env_id in envs.MUJOCO_TASKS.values() else np.float32)
    assert env.observation_space.contains(obs)
    obs, *_ = env.step(env.action_space.sample())
    assert obs.shape == env.observation_space.shape
    assert sorted(SAMPLE_DATASETS) == sorted(ENV_ALIASES) and env_id in BEHAVIOURS


def test_spec_limits():
    assert gym.spec("seqlens/MaskedCartPole-v1").max_episode_steps == 500
    assert gym.spec("seqlens/MaskedPendulum-v1").max_episode_steps == 200
    assert gym.make(resolve_env_id("keydoor")).action_space == gym.spaces.Discrete(4)
    assert OBS_NAMES["seqlens/MaskedCartPole-v1"] == ["cart_position", "pole_angle"]
    assert OBS_NAMES["seqlens/MaskedPendulum-v1"] == ["cos_theta", "sin_theta"]


# ---- masked variants ------------------------------------------------------------------------------
@pytest.mark.parametrize("full_id, masked_id, keep, make_action", [
    ("CartPole-v1", "seqlens/MaskedCartPole-v1", [0, 2], lambda t: t % 3 % 2),
    ("Pendulum-v1", "seqlens/MaskedPendulum-v1", [0, 1], lambda t: np.array([np.sin(t / 5)], np.float32)),
])
def test_masked_obs_is_the_full_obs_subset(full_id, masked_id, keep, make_action):
    full, masked = gym.make(full_id), gym.make(masked_id)
    o_full, _ = full.reset(seed=7)
    o_mask, _ = masked.reset(seed=7)
    assert masked.observation_space.shape == (len(keep),)
    for t in range(60):
        np.testing.assert_array_equal(o_mask, o_full[keep])
        o_full, r_full, term_full, trunc_full, _ = full.step(make_action(t))
        o_mask, r_mask, term_mask, trunc_mask, _ = masked.step(make_action(t))
        assert (r_mask, term_mask, trunc_mask) == (r_full, term_full, trunc_full)
        if term_full or trunc_full:
            break
    np.testing.assert_array_equal(masked.unwrapped.state, full.unwrapped.state)  # policies see the full state


# ---- Key-to-Door known answers ----------------------------------------------------------------------
def _keydoor(key=(1, 2), door=(2, 3)):
    """An env with key one step up and door one step right of the centre start (2, 2)."""
    env = gym.make("seqlens/KeyToDoor-v0")
    env.reset(seed=0)
    env.unwrapped.key, env.unwrapped.door = np.array(key), np.array(door)
    return env


def _run(env, actions):
    out = [env.step(a) for a in actions]
    obs = np.array([o[0] for o in out])
    return obs, [o[1] for o in out], [o[2] for o in out], [o[3] for o in out], [o[4] for o in out]


def test_keydoor_reward_only_with_key_and_phase2_3_obs_hide_it():
    steps1, steps2, _ = gym.make("seqlens/KeyToDoor-v0").unwrapped.phase_steps
    # phase 1: take the key (up), then wander back; or never touch it (down, away from the key)
    with_key = [UP] + [DOWN, UP] * 10
    without_key = [DOWN] * 20
    later = [LEFT, RIGHT] * (steps2 // 2) + [RIGHT]  # phase 2 wandering back to the centre, then onto the door
    results = {}
    for name, phase1 in (("with", with_key[:steps1]), ("without", without_key[:steps1])):
        env = _keydoor()
        obs, rewards, terminated, truncated, infos = _run(env, phase1 + later)
        assert terminated[-1] and not truncated[-1] and not any(terminated[:-1])
        assert sum(rewards[:-1]) == 0 and len(rewards) == steps1 + steps2 + 1
        assert infos[-1]["has_key"] == (name == "with")
        results[name] = obs, rewards[-1]
    assert results["with"][1] == 1.0 and results["without"][1] == 0.0
    # from the first phase-2 observation on, nothing tells whether the key was taken
    np.testing.assert_array_equal(results["with"][0][steps1 - 1:], results["without"][0][steps1 - 1:])
    assert not np.array_equal(results["with"][0][:steps1 - 1], results["without"][0][:steps1 - 1])


def test_keydoor_observation_fields():
    env = _keydoor()
    names = OBS_NAMES["seqlens/KeyToDoor-v0"]
    o = dict(zip(names, env.step(LEFT)[0]))
    assert (o["agent_row"], o["agent_col"]) == (2, 1) and (o["phase_1"], o["phase_2"], o["phase_3"]) == (1, 0, 0)
    assert (o["key_row"], o["key_col"], o["door_row"], o["door_col"]) == (1, 2, -1, -1)
    o = dict(zip(names, env.step(UP)[0]))  # (1, 1)
    o = dict(zip(names, env.step(RIGHT)[0]))  # onto the key: it disappears from view
    assert (o["key_row"], o["key_col"]) == (-1, -1)
    steps1, steps2, _ = env.unwrapped.phase_steps
    _run(env, [UP] * (steps1 - 3 + steps2 - 1))
    o = dict(zip(names, env.step(UP)[0]))  # first phase-3 observation: centre, door visible
    assert (o["agent_row"], o["agent_col"], o["phase_3"], o["door_row"], o["door_col"]) == (2, 2, 1, 2, 3)


def test_keydoor_truncates_when_phase3_runs_out():
    env = _keydoor(door=(4, 4))
    steps = sum(env.unwrapped.phase_steps)
    obs, rewards, terminated, truncated, _ = _run(env, [UP] * steps)  # never reaches the door
    assert truncated[-1] and not any(truncated[:-1]) and not any(terminated) and sum(rewards) == 0
    assert steps == gym.spec("seqlens/KeyToDoor-v0").max_episode_steps


def test_keydoor_reset_is_seeded():
    a, b = gym.make("seqlens/KeyToDoor-v0"), gym.make("seqlens/KeyToDoor-v0")
    firsts = [a.reset(seed=s)[0] for s in range(20)]
    np.testing.assert_array_equal(firsts, [b.reset(seed=s)[0] for s in range(20)])
    assert len({tuple(f[5:7]) for f in firsts}) > 5  # key positions vary
    assert all(tuple(f[5:7]) != (2, 2) for f in firsts)  # never under the agent


# ---- rendering and vector envs ----------------------------------------------------------------------
@pytest.mark.parametrize("env_id", ALL_IDS)
def test_rgb_array_render(env_id, monkeypatch):
    if env_id in envs.MUJOCO_TASKS.values() and "MUJOCO_GL" not in os.environ:
        monkeypatch.setenv("MUJOCO_GL", "egl")  # headless: MuJoCo's default (GLFW) needs a display
    env = gym.make(env_id, render_mode="rgb_array")
    env.reset(seed=0)
    img = env.render()
    assert img.ndim == 3 and img.shape[2] == 3 and img.dtype == np.uint8 and img.shape[0] >= 64


def test_keydoor_render_colours():
    env = _keydoor()
    env.unwrapped.render_mode = "rgb_array"
    img = env.render()
    assert img.shape == (96, 80, 3)
    colours = {tuple(c) for c in img.reshape(-1, 3)}
    assert (40, 90, 220) in colours and (235, 185, 20) in colours  # agent, key
    _run(env, [DOWN] * sum(env.unwrapped.phase_steps[:2]))
    assert (130, 70, 25) in {tuple(c) for c in env.render().reshape(-1, 3)}  # the door in phase 3


@pytest.mark.parametrize("env_id", CUSTOM_IDS)
def test_sync_vector_env(env_id):
    vec = gym.make_vec(env_id, num_envs=3, vectorization_mode="sync")
    obs, _ = vec.reset(seed=1)
    vec.action_space.seed(1)
    for _ in range(30):  # runs across Key-to-Door's autoreset
        obs, rewards, terminated, truncated, _ = vec.step(vec.action_space.sample())
    assert obs.shape == (3, len(OBS_NAMES[env_id])) and rewards.shape == (3,)
    vec.close()


# ---- behaviour policies and collect() --------------------------------------------------------------
def test_controllers_are_near_optimal_without_noise():
    env = gym.make("CartPole-v1")
    for seed in range(3):
        env.reset(seed=seed)
        steps, done = 0, False
        while not done:
            _, _, terminated, truncated, _ = env.step(int(CARTPOLE_GAINS @ env.unwrapped.state > 0))
            steps, done = steps + 1, terminated or truncated
        assert steps == 500 and truncated
    env = gym.make("Pendulum-v1")
    returns = []
    for seed in range(8):
        env.reset(seed=seed)
        returns.append(sum(env.step(np.array([pendulum_torque(env.unwrapped.state)], np.float32))[1] for _ in range(200)))
    assert np.mean(returns) > -250


def test_collect_is_deterministic_and_valid():
    a = collect("keydoor", 40, seed=3, progress=False)
    b = collect("seqlens/KeyToDoor-v0", 40, seed=3, progress=False)
    assert isinstance(a, Dataset) and a.equals(b) and a.metadata == b.metadata
    assert not a.equals(collect("keydoor", 40, seed=4, progress=False))
    assert a.env_id == "seqlens/KeyToDoor-v0" and a.obs_names == OBS_NAMES[a.env_id] and a.n_actions == 4
    assert a.n_episodes == 40 and len(a.metadata["seek_key"]) == len(a.metadata["key_taken"]) == 40
    # a prefix of the episodes does not depend on how many are collected
    assert a.select(range(10)).equals(collect("keydoor", 10, seed=3, progress=False))
    # every episode ends on its own done flag, and only there
    done = a.terminated | a.truncated
    assert done[a.episode_ends - 1].all() and done.sum() == a.n_episodes


def test_collect_pendulum_dataset_shapes():
    d = collect("masked-pendulum", 2, seed=0, progress=False)
    assert d.observations.shape == (400, 2) and d.actions.shape == (400, 1) and not d.discrete
    assert d.act_names == ["torque"] and d.truncated.sum() == 2 and not d.terminated.any()
    assert np.abs(d.actions).max() <= 2.0 and len(d.metadata["epsilon"]) == 2


@pytest.mark.parametrize("env, low, high", [("cartpole", 100, 500), ("pendulum", -1200, -300)])
def test_return_spread_covers_low_and_high(env, low, high):
    returns = collect(env, 60, seed=0, progress=False).episode_returns
    assert returns.min() < low and returns.max() >= high
    mid = (returns > returns.min() + 0.3 * np.ptp(returns)) & (returns < returns.max() - 0.3 * np.ptp(returns))
    assert mid.sum() >= 6  # not just the two extremes


def test_keydoor_seek_or_avoid_success_rate():
    d = collect("keydoor", 400, seed=0, progress=False)
    success = d.episode_returns > 0
    key, seek_key = np.array(d.metadata["key_taken"]), np.array(d.metadata["seek_key"])
    assert 0.15 < success.mean() < 0.33
    assert key[seek_key].mean() > 0.75 and key[~seek_key].mean() < 0.1
    assert not (success & ~key).any()  # reward 1 needs the key
