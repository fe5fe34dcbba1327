"""envs/key_to_door_cue.py (the cue variant of Key-to-Door, issue 24 item 3), the uniform-random behaviour
(envs/behaviour.py "keydoor-random") and the delayed-reward environments (envs/delayed.py): known answers."""
import gymnasium as gym
import numpy as np
import pytest

import envs
from envs import ACTION_LABELS, OBS_NAMES
from envs.behaviour import DATA_RECIPES, NAMED_BEHAVIOURS, collect, recipe_dataset

CUE = "seqlens/KeyToDoorCue-v0"
UP, DOWN, LEFT, RIGHT = range(4)


def _cue_env(cue=0, key=(1, 2), doors=((2, 3), (2, 1)), render_mode=None):
    """Key one step up, door a one step right and door b one step left of the centre start (2, 2)."""
    env = gym.make(CUE, render_mode=render_mode)
    env.reset(seed=0)
    e = env.unwrapped
    e.cue, e.key, e.doors = cue, np.array(key), np.array(doors)
    return env


def _play(env, phase1, last):
    """Phase 1 moves (padded with down/up), phase 2 wandering back to the centre, then `last` in phase 3."""
    s1, s2, _ = env.unwrapped.phase_steps
    moves = (list(phase1) + [DOWN, UP] * s1)[:s1] + [LEFT, RIGHT] * (s2 // 2) + [last]
    out = [env.step(a) for a in moves]
    return np.array([o[0] for o in out]), [o[1] for o in out], [o[2] for o in out], [o[4] for o in out]


@pytest.mark.parametrize("cue", [0, 1])
def test_only_the_door_of_the_cue_pays_and_only_with_the_key(cue):
    paid = {}
    for took_key in (True, False):
        for door, move in ((0, RIGHT), (1, LEFT)):
            env = _cue_env(cue)
            _, rewards, terminated, infos = _play(env, [UP] if took_key else [DOWN] * 7, move)
            assert terminated[-1] and not any(terminated[:-1]) and sum(rewards[:-1]) == 0
            assert infos[-1]["door"] == door and infos[-1]["has_key"] == took_key and infos[-1]["cue"] == cue
            paid[took_key, door] = rewards[-1]
    assert paid == {(True, cue): 1.0, (True, 1 - cue): 0.0, (False, 0): 0.0, (False, 1): 0.0}


def test_the_cue_is_seen_in_phase_1_only():
    s1 = gym.make(CUE).unwrapped.phase_steps[0]
    obs = {cue: _play(_cue_env(cue), [UP], RIGHT)[0] for cue in (0, 1)}
    names = OBS_NAMES[CUE]
    ca, cb = names.index("cue_a"), names.index("cue_b")
    assert (obs[0][:s1 - 1, ca] == 1).all() and (obs[0][:s1 - 1, cb] == 0).all()   # the last phase-1 step's obs is phase 2's
    assert (obs[1][:s1 - 1, ca] == 0).all() and (obs[1][:s1 - 1, cb] == 1).all()
    # from the first phase-2 observation on, the two episodes (same moves, other cue) look exactly alike
    np.testing.assert_array_equal(obs[0][s1 - 1:], obs[1][s1 - 1:])
    assert not np.array_equal(obs[0][:s1 - 1], obs[1][:s1 - 1])


def test_observation_fields_per_phase():
    env = _cue_env(1, key=(1, 2), doors=((0, 0), (4, 4)))
    names = OBS_NAMES[CUE]
    o = dict(zip(names, env.step(LEFT)[0]))
    assert (o["agent_row"], o["agent_col"], o["phase_1"], o["phase_2"], o["phase_3"]) == (2, 1, 1, 0, 0)
    assert (o["key_row"], o["key_col"], o["cue_a"], o["cue_b"]) == (1, 2, 0, 1)
    assert all(o[k] == -1 for k in ("door_a_row", "door_a_col", "door_b_row", "door_b_col"))
    env.step(UP)
    o = dict(zip(names, env.step(RIGHT)[0]))   # onto the key: it disappears, the cue stays for the rest of phase 1
    assert (o["key_row"], o["key_col"], o["cue_b"]) == (-1, -1, 1) and env.unwrapped.has_key
    s1, s2, _ = env.unwrapped.phase_steps
    for _ in range(s1 - 3):
        o = dict(zip(names, env.step(UP)[0]))
    assert (o["phase_2"], o["cue_a"], o["cue_b"], o["key_row"], o["door_a_row"]) == (1, 0, 0, -1, -1)
    for _ in range(s2):
        o = dict(zip(names, env.step(UP)[0]))
    assert o["phase_3"] == 1 and (o["door_a_row"], o["door_a_col"], o["door_b_row"], o["door_b_col"]) == (0, 0, 4, 4)
    assert (o["cue_a"], o["cue_b"]) == (0, 0)
    assert env.observation_space.contains(env.unwrapped._obs())


def test_truncates_when_phase3_runs_out_and_is_registered_like_key_to_door():
    env = _cue_env(0, doors=((0, 0), (4, 4)))
    steps = sum(env.unwrapped.phase_steps)
    out = [env.step(RIGHT) for _ in range(steps)]   # stays on row 2: never on a door
    assert out[-1][3] and not any(o[3] for o in out[:-1]) and not any(o[2] for o in out) and sum(o[1] for o in out) == 0
    assert steps == gym.spec(CUE).max_episode_steps == gym.spec("seqlens/KeyToDoor-v0").max_episode_steps
    assert envs.check_env_id(CUE) == CUE and ACTION_LABELS[CUE] == ["up", "down", "left", "right"]


def test_runs_in_a_vector_env_across_episode_ends():
    """Infos are stacked per key across envs: `door` is an int in every step (None once broke evaluation)."""
    vec = envs.make_vec(CUE, num_envs=4, vectorization_mode="sync")
    vec.reset(seed=0)
    rng = np.random.default_rng(0)
    ends = 0
    for _ in range(120):
        _, _, term, trunc, info = vec.step(rng.integers(4, size=4))
        ends += int(np.sum(term | trunc))
        assert set(np.unique(info["door"])) <= {-1, 0, 1}
    assert ends >= 8


def test_reset_is_seeded_and_draws_both_cues_and_two_doors():
    a, b = gym.make(CUE), gym.make(CUE)
    firsts = [a.reset(seed=s) for s in range(40)]
    for s, (o, info) in enumerate(firsts):
        o2, info2 = b.reset(seed=s)
        np.testing.assert_array_equal(o, o2)
        assert info["cue"] == info2["cue"]
        assert not (a.unwrapped.doors[0] == a.unwrapped.doors[1]).all()
    assert {info["cue"] for _, info in firsts} == {0, 1}


def test_render_shows_the_cue_in_phase_1_only():
    env = _cue_env(1, render_mode="rgb_array")
    px = env.unwrapped.cell_px
    img = env.render()
    assert img.shape == (px * 6, px * 5, 3) and img.dtype == np.uint8
    purple = (150, 60, 200)
    assert (img[:px] == purple).all(axis=-1).any()                    # the cue swatch in the header
    assert (img[px + px:2 * px + px, 2 * px:3 * px] == purple).all(axis=-1).any()   # the key at (1, 2)
    for _ in range(sum(env.unwrapped.phase_steps[:2])):
        env.step(DOWN)   # never onto the key: no key-coloured dot on the agent either
    img = env.render()
    assert not (img == purple).all(axis=-1).any()                     # phase 3: no purple anywhere but ...
    door_b = img[px + 2 * px:px + 3 * px, px:2 * px]                   # ... door b at (2, 1) in its own colour
    assert (door_b == (95, 30, 140)).all(axis=-1).any()


# ---- behaviours ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(NAMED_BEHAVIOURS))
def test_named_behaviours_are_deterministic_by_seed(name):
    a, b = collect(name, 30, seed=3, progress=False), collect(name, 30, seed=3, progress=False)
    assert a.equals(b) and not a.equals(collect(name, 30, seed=4, progress=False))
    assert a.env_id == NAMED_BEHAVIOURS[name][0] and a.obs_names == OBS_NAMES[a.env_id] and a.n_actions == 4
    assert a.select(range(10)).equals(collect(name, 10, seed=3, progress=False))


def test_random_behaviour_is_uniform_and_ignores_the_state():
    d = collect("keydoor-random", 400, seed=0, progress=False)
    counts = np.bincount(d.actions, minlength=4) / d.n_transitions
    np.testing.assert_allclose(counts, 0.25, atol=0.01)   # ~10k actions: 4 sigma ~ 0.017 / 2
    assert d.metadata["policy"] == "uniform-random"
    # it does not head for the key: the key is picked up about as often as by a blind walk (seek-or-avoid: ~50%+)
    assert 0.05 < np.mean(d.metadata["key_taken"]) < 0.5


def test_cue_behaviour_logs_the_cue_and_reaches_the_matching_door_more_often_than_random():
    d = collect("keydoor-cue", 300, seed=0, progress=False)
    r = collect("keydoor-cue-random", 300, seed=0, progress=False)
    assert set(d.metadata["cue"]) == {0, 1} and len(d.metadata["cue"]) == d.n_episodes
    assert set(d.metadata["door"]) == {"matching", "other", "avoid"}
    assert (d.episode_returns > 0).mean() > 2 * (r.episode_returns > 0).mean()


def test_unknown_behaviour_names_what_make_data_knows():
    with pytest.raises(ValueError, match="keydoor-random"):
        collect("acrobot", 3, progress=False)


# ---- delayed-reward environments ---------------------------------------------------------------------------
def test_delayed_cartpole_pays_the_sum_on_the_last_step():
    plain, delayed = gym.make("CartPole-v1"), gym.make("seqlens/DelayedCartPole-v1")
    plain.reset(seed=7), delayed.reset(seed=7)
    r_plain, r_delayed, done, t = [], [], False, 0
    while not done:
        a = t % 2 if t < 40 else 0   # balance a while, then push left until it falls
        o1, r1, term1, trunc1, _ = plain.step(a)
        o2, r2, term2, trunc2, _ = delayed.step(a)
        np.testing.assert_array_equal(o1, o2)
        assert (term1, trunc1) == (term2, trunc2)
        r_plain.append(r1), r_delayed.append(r2)
        done, t = term1 or trunc1, t + 1
    assert r_delayed[-1] == sum(r_plain) == len(r_plain) and sum(r_delayed[:-1]) == 0
    assert gym.spec("seqlens/DelayedCartPole-v1").max_episode_steps == 500
    assert OBS_NAMES["seqlens/DelayedCartPole-v1"] == OBS_NAMES["CartPole-v1"]


def test_delayed_pendulum_pays_on_truncation():
    env = gym.make("seqlens/DelayedPendulum-v1")
    env.reset(seed=0)
    out = [env.step(np.zeros(1, np.float32)) for _ in range(200)]
    assert out[-1][3] and not any(o[3] for o in out[:-1]) and all(o[1] == 0 for o in out[:-1]) and out[-1][1] < -100


def test_data_recipes_build():
    ds = recipe_dataset("cartpole-delayed", episodes=5)
    assert ds.env_id == "seqlens/DelayedCartPole-v1" and ds.n_episodes == 5
    np.testing.assert_array_equal(ds.rewards[ds.episode_ends - 1], ds.episode_lengths)
    kd = recipe_dataset("keydoor-random-10k", episodes=20)
    assert kd.equals(collect("keydoor-random", 20, seed=0, progress=False))
    assert set(DATA_RECIPES) >= {"keydoor-random-1k", "keydoor-random-10k", "keydoor-cue-random-10k"}
    with pytest.raises(ValueError, match="keydoor-random-1k"):
        recipe_dataset("nope")


# ---- cli.py make-data ----------------------------------------------------------------------------------------------
def _make_data(*args):
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    return subprocess.run([sys.executable, "cli.py", "make-data", *map(str, args)], cwd=root, capture_output=True, text=True)


def test_make_data_named_behaviour_and_delayed_reward(tmp_path):
    from trajectories import load_dataset

    res = _make_data("--env", "keydoor-random", "--episodes", "30", "--seed", "2", "--out", tmp_path / "r.npz", "--json")
    assert res.returncode == 0, res.stderr
    assert load_dataset(tmp_path / "r.npz").equals(collect("keydoor-random", 30, seed=2, progress=False))
    res = _make_data("--env", "cartpole", "--episodes", "3", "--out", tmp_path / "d.npz", "--delayed-reward", "--json")
    assert res.returncode == 0, res.stderr
    d, plain = load_dataset(tmp_path / "d.npz"), collect("cartpole", 3, seed=0, progress=False)
    assert d.env_id == "seqlens/DelayedCartPole-v1" and np.count_nonzero(d.rewards) == 3
    np.testing.assert_array_equal(d.episode_returns, plain.episode_returns)
    res = _make_data("--env", "reacher", "--episodes", "1", "--out", tmp_path / "x.npz", "--delayed-reward")
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1 and "no delayed-reward variant" in res.stderr
    assert not (tmp_path / "x.npz").exists()
