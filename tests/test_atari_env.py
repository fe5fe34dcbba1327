"""envs/atari.py: Atari frames as the DT paper's evaluation Env made them, checked against the ALE screen by hand."""
import cv2
import gymnasium as gym
import numpy as np
import pytest

import envs
from envs.atari import FRAME, OBS_SHAPE, game_of, make_atari


def _ale(env):
    return env.unwrapped.ale


def test_reset_stack_is_three_zero_frames_then_the_resized_screen():
    env = make_atari("Breakout")
    obs, _ = env.reset(seed=1)
    assert obs.shape == OBS_SHAPE == (4, 84, 84) and obs.dtype == np.uint8
    assert not obs[:3].any()   # the paper's _reset_buffer: zero frames before the first
    gray = _ale(env).getScreenGrayscale()
    assert gray.shape == (210, 160)
    want = cv2.resize(gray, (FRAME, FRAME), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_array_equal(obs[-1], want)
    # gymnasium's AtariPreprocessing resizes with INTER_AREA: not the paper's frame
    assert not np.array_equal(obs[-1], cv2.resize(gray, (FRAME, FRAME), interpolation=cv2.INTER_AREA))
    frame = env.render()
    assert frame.shape == (210, 160, 3) and frame.dtype == np.uint8
    np.testing.assert_array_equal(frame, _ale(env).getScreenRGB())


def test_step_repeats_four_times_and_max_pools_the_resized_last_two():
    env = make_atari("Breakout")
    obs, _ = env.reset(seed=2)
    ale = _ale(env)
    action_set = env.unwrapped._action_set
    differs_from_pool_then_resize = False
    for t, action in enumerate([1, 1, 2, 2, 3, 0, 2, 1]):   # FIRE launches the ball: frames move
        before = ale.cloneState()
        new, reward, terminated, truncated, _ = env.step(action)
        after = ale.cloneState()
        ale.restoreState(before)
        total, grays = 0, []
        for _ in range(4):
            total += ale.act(action_set[action])
            grays.append(ale.getScreenGrayscale())
        resized = [cv2.resize(g, (FRAME, FRAME), interpolation=cv2.INTER_LINEAR) for g in grays[2:]]
        np.testing.assert_array_equal(new[-1], np.maximum(*resized))
        np.testing.assert_array_equal(new[:-1], obs[1:])   # the stack shifts by one frame
        assert reward == total and not (terminated or truncated)
        pooled_first = cv2.resize(np.maximum(*grays[2:]), (FRAME, FRAME), interpolation=cv2.INTER_LINEAR)
        differs_from_pool_then_resize |= not np.array_equal(new[-1], pooled_first)
        ale.restoreState(after)
        obs = new
    assert differs_from_pool_then_resize   # the order (resize, then max) is the paper's, and it shows


def test_seeded_noop_starts():
    env = make_atari("Breakout")
    firsts, noops = {}, {}
    for seed in range(12):
        obs, _ = env.reset(seed=seed)
        firsts[seed], noops[seed] = obs.copy(), env.get_wrapper_attr("noops")
    for seed in (0, 5, 11):
        again, _ = env.reset(seed=seed)
        np.testing.assert_array_equal(again, firsts[seed])
        assert env.get_wrapper_attr("noops") == noops[seed]
    assert all(0 <= n < 30 for n in noops.values())   # random.randrange(30)
    assert len(set(noops.values())) > 3
    no_noops = make_atari("Breakout", noop_max=0)
    obs, _ = no_noops.reset(seed=0)
    assert no_noops.get_wrapper_attr("noops") == 0


def test_registered_ids_and_action_labels():
    for game in envs.ATARI_GAMES:
        env_id = f"seqlens/DTAtari-{game}-v0"
        assert envs.resolve_env_id(game.lower()) == env_id
        env = envs.make(env_id)
        assert env.observation_space == gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)
        assert env.unwrapped.get_action_meanings() == envs.ACTION_LABELS[env_id]
        assert env.action_space == gym.spaces.Discrete(len(envs.ACTION_LABELS[env_id]))
        env.close()


def test_game_names():
    assert game_of("breakout") == game_of("ALE/Breakout-v5") == game_of("BreakoutNoFrameskip-v4") == "Breakout"
    assert game_of("seqlens/DTAtari-Qbert-v0") == "Qbert"
    with pytest.raises(ValueError, match="not an Atari game ale-py knows") as err:
        game_of("os:system")
    assert str(err.value).count(".") == 1 and "\n" not in str(err.value)
