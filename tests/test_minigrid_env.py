"""envs/minigrid_dti.py: DTI's Memory variants and observation wrappers, checked against hand-read layouts."""
import subprocess
import sys

import numpy as np
import pytest
from minigrid.core.constants import COLOR_TO_IDX, OBJECT_TO_IDX
from minigrid.wrappers import ViewSizeWrapper as MiniGridViewSize

import envs
from envs.minigrid_dti import ONE_HOT_BITS, make_dti_env, one_hot

FIXED = "MiniGrid-MemoryS7FixedStart-v0"
RANDOM_DIR = "MiniGrid-MemoryS7RandomDirection-v0"
WALL, EMPTY, KEY, BALL = (OBJECT_TO_IDX[k] for k in ("wall", "empty", "key", "ball"))
GREEN = COLOR_TO_IDX["green"]


def test_registered_on_import_without_importing_minigrid_ale_or_cv2():
    code = ("import sys, gymnasium, envs; ids = ['MiniGrid-MemoryS7FixedStart-v0', 'seqlens/DTAtari-Pong-v0'];"
            "print(all(i in gymnasium.registry for i in ids), [m in sys.modules for m in ('minigrid', 'ale_py', 'cv2')])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split("\n")[0]
    assert out == "True [False, False, False]"


def test_fixed_start_layout_seed_0():
    env = envs.make(FIXED)
    obs, _ = env.reset(seed=0)
    u = env.unwrapped
    assert u.agent_pos == (1, 3) and u.agent_dir == 0 and u.max_steps == 1000
    grid = u.grid.encode()[:, :, 0]   # [x, y] object codes
    # walls: the border, the start room's top and bottom rows, its right-hand corners, the split's columns 4 and 6
    for x, y in [(0, 3), (6, 3), (3, 0), (1, 1), (4, 1), (1, 5), (4, 5), (4, 2), (4, 4), (4, 0), (6, 1), (6, 5)]:
        assert grid[x, y] == WALL, (x, y)
    for x, y in [(1, 3), (2, 3), (3, 3), (4, 3), (5, 3), (5, 2), (5, 4), (2, 2), (3, 4)]:
        assert grid[x, y] == EMPTY, (x, y)
    # seed 0 draws a ball for the start room and [Key, Ball] for the split: the match is at the bottom
    assert (grid[1, 2], grid[5, 1], grid[5, 5]) == (BALL, KEY, BALL)
    assert u.grid.encode()[1, 2, 1] == GREEN and u.target_obj == "ball" and u.target_pos == "bottom"
    assert (u.success_pos, u.failure_pos) == ((5, 4), (5, 2))
    # the 7x7 partial view, agent at view (3, 6) facing right (view up = world +x, view right = world +y)
    image = obs["image"]
    assert image.shape == (7, 7, 3) and obs["direction"] == 0
    assert obs["mission"] == "go to the matching object at the end of the hallway"
    assert tuple(image[2, 6]) == (BALL, GREEN, 0)     # world (1, 2): the start room's object, left of the agent
    assert tuple(image[1, 2]) == (KEY, GREEN, 0)      # world (5, 1)
    assert tuple(image[5, 2]) == (BALL, GREEN, 0)     # world (5, 5)
    assert image[3, 5, 0] == EMPTY and image[3, 2, 0] == EMPTY   # world (2, 3), (5, 3)
    assert image[1, 6, 0] == WALL and image[0, 6, 0] == OBJECT_TO_IDX["unseen"]   # (1, 1); (1, 0) hidden behind it
    assert env.render().shape == (224, 224, 3)        # 7 cells x 32 px


def test_fixed_start_is_fixed_and_random_direction_is_not():
    env, other = envs.make(FIXED), envs.make(RANDOM_DIR)
    dirs, columns = set(), set()
    for seed in range(16):
        env.reset(seed=seed)
        assert env.unwrapped.agent_pos == (1, 3) and env.unwrapped.agent_dir == 0
        other.reset(seed=seed)
        dirs.add(other.unwrapped.agent_dir)
        columns.add(other.unwrapped.agent_pos[0])
    assert len(dirs) > 1 and dirs <= {0, 1, 2, 3}
    assert len(columns) > 1 and columns <= {1, 2, 3, 4}


@pytest.mark.parametrize("turn, reward", [(1, 1 - 0.9 * 6 / 1000), (0, 0)])
def test_matching_object_rewards_and_the_other_ends_with_zero(turn, reward):
    env = envs.make(FIXED)
    env.reset(seed=0)   # the match is at the bottom: turn right (1) to reach it, left (0) for the other
    for action in [2, 2, 2, 2]:
        _, r, terminated, truncated, _ = env.step(action)
        assert r == 0 and not terminated
    env.step(turn)
    _, r, terminated, truncated, _ = env.step(2)
    assert terminated and not truncated and r == pytest.approx(reward, abs=1e-12)


def test_one_hot_obs_is_the_one_hot_of_the_grid():
    plain = make_dti_env(FIXED)
    hot = make_dti_env(FIXED, one_hot_obs=True)
    assert hot.observation_space["image"].shape == (7, 7, ONE_HOT_BITS) == (7, 7, 20)
    for seed in (0, 3):
        a, _ = plain.reset(seed=seed)
        b, _ = hot.reset(seed=seed)
        for action in [None, 2, 1, 2]:
            if action is not None:
                a, *_ = plain.step(action)
                b, *_ = hot.step(action)
            np.testing.assert_array_equal(b["image"], one_hot(a["image"]))
            assert (b["direction"], b["mission"]) == (a["direction"], a["mission"])
    b, _ = hot.reset(seed=0)
    cell = b["image"][2, 6]   # the green ball: object bit 6, colour bit 11 + 1, state bit 17 + 0
    assert np.flatnonzero(cell).tolist() == [BALL, 11 + GREEN, 17]
    assert (b["image"].sum(-1) == 3).all()


def test_view_size_is_dtis_wrapper_and_equals_minigrids():
    ours = make_dti_env(FIXED, view_size=5)
    theirs = MiniGridViewSize(envs.make(FIXED), agent_view_size=5)
    a, _ = ours.reset(seed=4)
    b, _ = theirs.reset(seed=4)
    assert a["image"].shape == (5, 5, 3)
    np.testing.assert_array_equal(a["image"], b["image"])
    with pytest.raises(ValueError, match="odd"):
        make_dti_env(FIXED, view_size=4)
    with pytest.raises(ValueError, match="cannot both"):
        make_dti_env(FIXED, one_hot_obs=True, fully_observed=True)


def test_family_ids_go_through_the_checks():
    assert envs.check_env_id("MiniGrid-Dynamic-Obstacles-8x8-v0") == "MiniGrid-Dynamic-Obstacles-8x8-v0"
    with pytest.raises(envs.EnvIdError, match="not registered") as err:
        envs.check_env_id("MiniGrid-NoSuchThing-v0")
    assert "\n" not in str(err.value)
    with pytest.raises(envs.EnvIdError, match="names a module to import"):
        envs.check_env_id("minigrid.envs:MemoryEnv")
    assert envs.resolve_env_id("memory") == FIXED


def test_dtis_multi_env_samplers():
    expected = {   # (width, count) of each sampler's envs, from DTI's registration.py loops
        "DynamicObstaclesMultiEnv-v0": [6] + [size for size in range(6, 10) for _ in range(5, 7)],
        "CrossingMultiEnv-v0": [size for _ in range(2) for size in range(5, 14, 2) for _ in range(7)],
        "MultiRoomMultiEnv-v0": [25] * 50,
    }
    for env_id, widths in expected.items():
        env = envs.make(env_id)
        sampler = env.unwrapped
        assert [e.width for e in sampler.envs] == widths
        assert env.observation_space["image"].shape == (7, 7, 3)
        if env_id == "CrossingMultiEnv-v0":
            kinds = [e.obstacle_type.__name__ for e in sampler.envs]
            assert kinds == ["Lava"] * 35 + ["Wall"] * 35
        global_rng = np.random.get_state()[1].copy()
        picked, firsts = set(), {}
        for seed in range(12):
            obs, _ = env.reset(seed=seed)
            assert env.observation_space.contains(obs)
            picked.add(sampler.env_index)
            firsts[seed] = (sampler.env_index, obs["image"].copy(), tuple(sampler.current.agent_pos))
        for seed in (0, 7):
            obs, _ = env.reset(seed=seed)
            assert sampler.env_index == firsts[seed][0] and tuple(sampler.current.agent_pos) == firsts[seed][2]
            np.testing.assert_array_equal(obs["image"], firsts[seed][1])
        assert len(picked) >= 4
        np.testing.assert_array_equal(np.random.get_state()[1], global_rng)   # numpy's global RNG untouched
