"""Live play (analysis/media/live.py, views/10_Live_play.py): the user's actions reach the state the same actions reach in
code; the agent acting alone is its rollout; what the DT shows after the user's actions is what its forward computes
on that history; bad actions and ended episodes get one sentence; the page plays with buttons."""
import gymnasium as gym
import numpy as np
import pytest
import torch

import envs
from analysis.media.live import MAX_AGENT_STEPS, LiveError, LiveGame
from models.checkpoint import load_agent
from models.rollout import run_episodes
from tests.test_page_attention import page

AGENTS = "sample_data/agents"


@pytest.fixture(scope="module")
def cartpole_dt():
    return load_agent(f"{AGENTS}/cartpole-dt")


def _in_code(env_id, seed, actions):
    env = envs.make(env_id)
    obs, _ = env.reset(seed=seed)
    out, rewards = [obs], []
    for a in actions:   # a continuous action as the action space holds it (float32)
        obs, r, term, trunc, _ = env.step(a if np.ndim(a) == 0 else np.asarray(a, env.action_space.dtype))
        out.append(obs)
        rewards.append(r)
    env.close()
    return np.asarray(out, np.float64), np.asarray(rewards)


@pytest.mark.parametrize("name, actions", [
    ("cartpole-dt", [1, 0, 0, 1, 1, 1, 0, 1]),
    ("pendulum-dt", [[1.5], [-2.0], [0.25], [2.0], [0.0]]),
    ("keydoor-dt", [3, 3, 1, 1, 0, 2, 3]),
])
def test_user_actions_reach_the_state_the_same_actions_reach_in_code(name, actions):
    agent = load_agent(f"{AGENTS}/{name}")
    game = LiveGame(agent, seed=11, render=False)
    for a in actions:
        game.step(a)
    obs, rewards = _in_code(agent.config.env_id, 11, actions)
    assert np.array_equal(np.stack(game.observations), obs)
    assert np.array_equal(game.rewards, rewards)
    assert game.rtg == pytest.approx(game.target - rewards.sum())
    assert game.by_agent == [False] * len(actions)


def test_the_agent_acting_alone_is_its_rollout(cartpole_dt):
    game = LiveGame(cartpole_dt, seed=4, target=300.0, sample=True, render=False)
    assert game.agent_acts(60) == 60
    ep = run_episodes(cartpole_dt, 1, [300.0], seed=4, env_seeds=[4], record=("actions", "rewards"), limit=60)
    assert np.array_equal(np.asarray(game.actions), ep.actions[0, :60])
    assert game.by_agent == [True] * 60 and game.rtg == pytest.approx(300.0 - 60)


def _forward_view(agent, obs, actions, rtg, K):
    """The DT's outputs at the last step of the raw history, by hand: normalised states, one-hot actions (the last
    a placeholder), scaled RTG, absolute timesteps, the model's own window (banded: n_layer * K steps)."""
    window = agent.hp["n_layer"] * K if agent.hp["banded"] else K
    obs, rtg = obs[-window:], rtg[-window:]
    L = len(obs)
    t0 = len(actions) + 1 - L
    acts = np.zeros((L, agent.action_in), np.float32)
    for i, a in enumerate(actions[t0:]):
        acts[i, a] = 1.0
    s = agent.normalize(torch.as_tensor(np.asarray(obs, np.float32)))[None]
    kw = dict(states=s, actions=torch.as_tensor(acts)[None],
              returns_to_go=torch.as_tensor(np.asarray(rtg, np.float32) / agent.config.rtg_scale)[None, :, None],
              timesteps=torch.arange(t0, t0 + L)[None], output_attentions=True)
    with torch.no_grad():
        out = agent(**kw)
        value = agent(**{**kw, "output_attentions": False}, rtg_known=False).value_preds[0, -1, 0] * agent.config.rtg_scale
    return out.action_preds[0, -1].softmax(-1).numpy(), float(value), out.attentions


def test_after_the_users_actions_the_view_is_the_models_forward_on_that_history(cartpole_dt):
    agent = cartpole_dt
    game = LiveGame(agent, seed=2, target=400.0, render=False)
    users = []
    for _ in range(25):                                  # longer than K=20; a hand controller keeps the pole up
        o = game.observations[-1]
        users.append(int(o[2] + 0.5 * o[3] > 0))
        game.step(users[-1])
    rtg = [400.0 - sum(game.rewards[:i]) for i in range(len(game.observations))]
    probs, value, _ = _forward_view(agent, game.observations, users, rtg, agent.context_length)
    assert np.allclose(game.view.proposed, probs, atol=1e-5)
    assert game.view.value == pytest.approx(value, abs=1e-3)
    # the user's actions are what it read: the same history with the other actions gives another policy (CartPole's
    # DT leans on states, so the change is small, but 10x the tolerance the equality above holds to)
    other = _forward_view(agent, game.observations, [1 - a for a in users], rtg, agent.context_length)[0]
    assert np.abs(other - game.view.proposed).max() > 1e-4
    assert game.view.attention.shape == (agent.context_length, 3)
    assert np.allclose(game.view.attention.sum(), 1.0, atol=1e-4)
    h = game.history()
    assert len(h["rtg"]) == len(users) + 1 and h["rtg"][-1] == pytest.approx(400.0 - len(users))
    assert not h["by_agent"].any()


def test_user_and_agent_take_turns(cartpole_dt):
    game = LiveGame(cartpole_dt, seed=9, render=False)
    game.step(1)
    game.agent_acts(3)
    game.step(0)
    assert game.by_agent == [False, True, True, True, False]
    obs, _ = _in_code("CartPole-v1", 9, game.actions)
    assert np.array_equal(np.stack(game.observations), obs)
    assert game.to_dataset().n_transitions == 5


def test_bad_actions_and_an_ended_episode_get_a_sentence(cartpole_dt):
    game = LiveGame(cartpole_dt, seed=0, render=False)
    for bad in (2, -1, 1.5, True, "left"):
        with pytest.raises(LiveError, match="whole number from 0 to 1"):
            game.step(bad)
    with pytest.raises(LiveError, match=f"1 to {MAX_AGENT_STEPS}"):
        game.agent_acts(MAX_AGENT_STEPS + 1)
    assert game.t == 0                       # nothing was taken
    while not game.done:
        game.step(0)                         # pushing left: the pole falls within a few dozen steps
    assert game.terminated and game.view is not None
    with pytest.raises(LiveError, match="episode is over"):
        game.step(0)
    assert game.agent_acts(5) == 0

    pend = LiveGame(load_agent(f"{AGENTS}/pendulum-dt"), seed=0, render=False)
    for bad in ([3.0], [np.nan], [0.1, 0.2]):
        with pytest.raises(LiveError, match=r"finite number\(s\) within \[-2, 2\]"):
            pend.step(bad)
    with pytest.raises(LiveError, match="Unknown environment|not registered"):
        LiveGame(None, env_id="no-such-env")
    with pytest.raises(LiveError, match="needs an environment"):
        LiveGame(None)


def test_without_an_acting_agent_the_environment_plays_and_says_why_there_is_no_view():
    game = LiveGame(load_agent(f"{AGENTS}/pendulum-dynamics"), seed=1, render=False)
    assert game.view is None and "does not act" in game.why_no_agent
    game.step([0.5])
    with pytest.raises(LiveError, match="no agent can act here: this dynamics agent does not act"):
        game.step(None)
    assert "beam search" in LiveGame(load_agent(f"{AGENTS}/pendulum-tt"), seed=1, render=False).why_no_agent


def test_an_mlp_shows_its_policy_at_the_current_observation():
    agent = load_agent(f"{AGENTS}/cartpole-mlp")
    game = LiveGame(agent, seed=1, render=False)
    for a in (1, 0, 1):
        game.step(a)
    with torch.no_grad():
        logits = agent(agent.normalize(torch.as_tensor(game.observations[-1], dtype=torch.float32)[None]))
    assert np.allclose(game.view.proposed, logits.softmax(-1)[0].numpy(), atol=1e-6)
    assert game.view.value is None and game.view.attention is None and game.rtg is None


def test_a_gru_reads_the_users_actions_and_alone_is_its_rollout():
    agent = load_agent(f"{AGENTS}/masked-cartpole-gru")
    game = LiveGame(agent, seed=2, render=False)
    users = [1, 0, 0, 1, 1]
    for a in users:
        game.step(a)
    obs = agent.normalize(torch.as_tensor(np.stack(game.observations), dtype=torch.float32))[None]
    prev = torch.zeros(1, len(users) + 1, agent.act_in)
    prev[0, np.arange(1, len(users) + 1), users] = 1.0           # a_{t-1} at step t: the user's
    with torch.no_grad():
        out, _ = agent(obs, prev)
    assert np.allclose(game.view.proposed, out[0, -1].softmax(-1).numpy(), atol=1e-5)
    alone = LiveGame(agent, seed=3, sample=True, render=False)
    alone.agent_acts(40)
    ep = run_episodes(agent, 1, None, seed=3, env_seeds=[3], record=("actions",), limit=40)
    assert np.array_equal(np.asarray(alone.actions), ep.actions[0, :len(alone.actions)])


def test_frames_are_the_environments_render(cartpole_dt):
    game = LiveGame(cartpole_dt, seed=5)
    game.step(1)
    env = gym.make("CartPole-v1", render_mode="rgb_array")
    env.reset(seed=5)
    env.step(1)
    assert np.array_equal(game.frame(), env.render())


def _click(at, key):
    at.button(key=key).click().run()
    assert not at.exception, at.exception
    return at


def test_the_page_plays_with_buttons_and_hands_the_controls_to_the_agent():
    at = page("10_Live_play.py", "cartpole-dt", "cartpole", live_seed=3)
    assert not at.error, [e.value for e in at.error]
    assert len(at.get("image")) == 1
    for key in ("live_a1", "live_a0", "live_a1"):
        _click(at, key)
    at.number_input(key="live_n").set_value(4).run()
    _click(at, "live_agent")
    game = at.session_state["live_game"]
    assert game.by_agent == [False, False, False, True, True, True, True]
    obs, _ = _in_code("CartPole-v1", 3, game.actions)
    assert np.array_equal(np.stack(game.observations), obs)
    assert [m.value for m in at.metric][:2] == ["7", "7"]
    assert any("Last step by the agent" in c.value for c in at.caption)
    _click(at, "live_new")
    assert at.session_state["live_game"].t == 0


def test_the_page_takes_continuous_actions_from_its_sliders():
    at = page("10_Live_play.py", "pendulum-dt", "pendulum")
    at.slider(key="live_c0").set_value(1.25).run()
    _click(at, "live_step")
    game = at.session_state["live_game"]
    obs, _ = _in_code("Pendulum-v1", 0, [np.array([1.25], np.float32)])
    assert np.array_equal(np.stack(game.observations), obs)


def test_the_page_with_an_mlp_shows_its_policy_and_lets_it_act():
    at = page("10_Live_play.py", "cartpole-mlp", "cartpole")
    assert not at.info and len(at.get("plotly_chart")) == 1          # its policy; no attention or value track
    _click(at, "live_a0")
    _click(at, "live_agent")
    assert at.session_state["live_game"].by_agent[:2] == [False, True]


def test_the_page_without_an_acting_agent_plays_and_says_so():
    at = page("10_Live_play.py", "pendulum-dynamics", "pendulum")
    assert any("does not act" in i.value for i in at.info)
    assert at.button(key="live_agent").disabled
    _click(at, "live_step")
    assert at.session_state["live_game"].t == 1


def test_a_mujoco_game_renders_from_any_thread():
    """A page reruns in a new thread each time; MuJoCo's EGL context belongs to the thread that made it (another
    thread's render() was black). The game's frames, made and asked for from different threads, equal a render of
    the same state."""
    from concurrent.futures import ThreadPoolExecutor

    from analysis.media.frames import make_render_env

    agent = load_agent(f"{AGENTS}/reacher-dt")
    with ThreadPoolExecutor(1) as a, ThreadPoolExecutor(1) as b:
        game = a.submit(LiveGame, agent, None, 3).result()
        if game.render_why is not None:
            pytest.skip(f"MuJoCo cannot render here: {game.render_why}")
        assert a.submit(game.frame).result().std() > 10   # the first render makes the GL context (in thread a)
        b.submit(game.step, [0.5, -0.5]).result()
        frame = b.submit(game.frame).result()
    env, _ = make_render_env("Reacher-v5")
    env.reset(seed=3)
    env.render()              # as the game did: MuJoCo aims its camera at its first render
    env.step(np.array([0.5, -0.5], np.float32))
    truth = env.render()
    env.close()
    assert frame.std() > 10 and np.array_equal(frame, truth)


def test_the_game_exports_as_a_video_with_what_the_agent_was_asked_and_saw(cartpole_dt):
    import imageio.v3 as iio

    game = LiveGame(cartpole_dt, seed=6, target=200.0)
    game.step(1)
    game.agent_acts(4)
    game.step(0)
    clip, data = game.clip(width=240)
    assert data["by"].tolist() == ["you", "agent", "agent", "agent", "agent", "you"]
    assert data["return_to_go"].tolist() == [200.0 - t for t in range(6)]
    r = clip.render()
    assert r.frames.shape[0] == 6 and r.frames.shape[2] == 240
    assert np.allclose(r.overlay.attention, np.stack([a for a in game.attentions[:6]]))
    assert "return-to-go 195" in r.overlay.texts()[5] and "push left (you)" in r.overlay.texts()[5]
    assert "(agent)" in r.overlay.texts()[1]
    gif = iio.imread(clip.encode("gif").data, index=None)
    assert gif.shape[0] == 6


def test_the_page_offers_the_game_as_gif_mp4_and_csv():
    at = page("10_Live_play.py", "cartpole-dt", "cartpole")
    assert not [b for b in at.get("download_button") if "live_video" in b.proto.id]   # nothing played yet
    _click(at, "live_a1")
    keys = [b.proto.id for b in at.get("download_button")]
    assert all(any(f"live_video_{fmt}" in k for k in keys) for fmt in ("gif", "mp4", "csv")), keys


def test_a_dropped_game_closes_its_environment(cartpole_dt):
    import gc

    game = LiveGame(cartpole_dt, seed=0, render=False)
    env, thread = game.env, game._thread
    closed = []
    env.close = lambda: closed.append(True)
    del game
    gc.collect()
    assert closed == [True] and thread._shutdown


def test_two_sessions_play_their_own_games():
    """A game lives in its session's state, never in a shared cache: one session's steps leave the other's alone."""
    a = page("10_Live_play.py", "cartpole-dt", "cartpole")
    b = page("10_Live_play.py", "cartpole-dt", "cartpole")
    _click(a, "live_a1")
    _click(a, "live_a1")
    b.run()
    assert a.session_state["live_game"].t == 2 and b.session_state["live_game"].t == 0
    assert a.session_state["live_game"] is not b.session_state["live_game"]


# ---- issue 27: the agent's turn animated at a chosen speed; downloads at the page width -----------------------------
def test_the_agents_steps_come_one_at_a_time_and_equal_its_turn_taken_at_once(cartpole_dt):
    """agent_steps takes one step per item (the page draws each before the next) and together they are agent_acts:
    the same actions, by the agent, on the same seed; its bound is checked before the first step, and it stops at the
    episode's end."""
    game, twin = LiveGame(cartpole_dt, seed=7, render=False), LiveGame(cartpole_dt, seed=7, render=False)
    with pytest.raises(LiveError, match=f"1 to {MAX_AGENT_STEPS}"):
        game.agent_steps(0)
    assert game.t == 0
    seen = []
    for n in game.agent_steps(12):
        seen.append((n, game.t, len(game.by_agent)))
    assert seen == [(n, n, n) for n in range(1, 13)]
    assert twin.agent_acts(12) == 12 and game.actions == twin.actions and game.by_agent == [True] * 12
    game.step(0)
    while not game.done:
        game.step(0)                          # pushing left until the pole falls
    assert list(game.agent_steps(5)) == []    # an ended episode: no step


def test_the_page_animates_the_agents_turn_at_the_chosen_speed(monkeypatch):
    """Issue 27: "Let the agent act" jumped to the end. Now each of the agent's steps is drawn (its frame, captioned
    with the step) before the next, paced at the chosen steps per second: time is faked, so the waits are exact."""
    import time

    import streamlit as st

    import sys

    clock, waits, captions = [100.0], [], []
    real_sleep, real_clock = time.sleep, time.monotonic

    def from_page() -> bool:   # the page's own calls get the fake clock; AppTest's polling keeps the real one
        return sys._getframe(2).f_code.co_filename.endswith("10_Live_play.py")

    def sleep(s):
        if not from_page():
            return real_sleep(s)
        waits.append(s)
        clock[0] += s

    monkeypatch.setattr(time, "monotonic", lambda: clock[0] if from_page() else real_clock())
    monkeypatch.setattr(time, "sleep", sleep)
    real_image = st.image
    monkeypatch.setattr(st, "image", lambda *a, **k: (captions.append(k.get("caption")), real_image(*a, **k))[1])
    at = page("10_Live_play.py", "cartpole-dt", "cartpole", live_seed=3, live_n=6, live_speed=5)
    captions.clear()
    _click(at, "live_agent")
    game = at.session_state["live_game"]
    assert game.by_agent == [True] * 6
    assert waits == pytest.approx([0.2] * 6)                       # 5 steps per second
    assert captions[:6] == [f"CartPole-v1, step {t}" for t in range(1, 7)]   # one frame per step, in order
    assert captions[-1] == "CartPole-v1, step 6"                   # and the frame it hands back on
    assert any("Last step by the agent" in c.value for c in at.caption)
    assert len(at.get("plotly_chart")) >= 2                        # its view is back after the turn


def test_live_play_downloads_default_to_the_page_width(cartpole_dt):
    from analysis.media.video import PAGE_WIDTH

    game = LiveGame(cartpole_dt, seed=6, target=200.0)
    game.agent_acts(3)
    clip, _ = game.clip()
    assert clip.width == PAGE_WIDTH >= 720
    r = clip.render()
    assert r.frames.shape[2] == PAGE_WIDTH
