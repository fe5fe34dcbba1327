"""The shipped Atari example (issue 23, item 5): the `breakout` dataset (a frame-reading scripted Breakout policy in
seqlens/DTAtari-Breakout-v0, the DT paper's 4x84x84 stacks) and the `breakout-dt` agent (atari_conv) trained on it;
every page opens on them and shows its main figure."""
from pathlib import Path

import numpy as np
import pytest

from envs.atari_expert import FIRE, LEFT, NOOP, RIGHT, ball_and_paddle, stacks, tracking_action
from models import load_agent
from trajectories import load_dataset
from trajectories.samples import SAMPLE_DIR

ROOT = Path(__file__).resolve().parent.parent
ENV_ID = "seqlens/DTAtari-Breakout-v0"


@pytest.fixture(scope="module")
def ds():
    return load_dataset(SAMPLE_DIR / "breakout.npz")


def test_shipped_breakout_dataset(ds):
    assert ds.obs_shape == (4, 84, 84) and ds.observations.dtype == np.uint8 and ds.obs_kind == "frame stacks"
    assert ds.env_id == ENV_ID and ds.n_actions == 4 and ds.n_episodes == 16
    assert 3000 <= ds.n_transitions <= 4000 and ds.episode_lengths.max() <= 250
    # returns spread (what return conditioning needs): from 1 to 10 points, 7 distinct values
    assert ds.episode_returns.min() <= 1 and ds.episode_returns.max() >= 10 and len(set(ds.episode_returns)) >= 7
    # a stack's frames are the episode's last four newest frames, zero before its first
    first = ds.observations[ds.episode_starts[1]]
    assert not first[:3].any() and first[3].any()
    np.testing.assert_array_equal(ds.observations[5][:3], ds.observations[4][1:])
    size = (SAMPLE_DIR / "breakout.npz").stat().st_size + sum(
        p.stat().st_size for p in (ROOT / "sample_data" / "agents" / "breakout-dt").iterdir())
    assert size < 8e6, size


def test_breakout_dataset_regenerates_exactly_from_its_seed(ds):
    from envs.behaviour import DEFLATED_SAMPLES, SHAPED_SAMPLES, breakout_dataset

    builder, episodes, seed = SHAPED_SAMPLES["breakout"]
    assert builder == "breakout_dataset" and breakout_dataset(episodes, seed=seed).equals(ds)
    assert "breakout" in DEFLATED_SAMPLES and not ds.mapped   # deflated: 1 MB on disk, decoded on load


def test_stacks_equal_the_envs_observations():
    from envs.atari import make_atari

    env = make_atari("Breakout", render_mode=None)
    obs, _ = env.reset(seed=3)
    seen, frames = [obs], [obs[-1]]
    for a in (FIRE, RIGHT, RIGHT, LEFT, NOOP, FIRE):
        obs, *_ = env.step(a)
        seen.append(obs)
        frames.append(obs[-1])
    env.close()
    rebuilt = stacks(np.array(frames[:4] + frames[4:]), np.array([0, 4]))
    np.testing.assert_array_equal(rebuilt[:4], np.array(seen[:4]))
    # a second episode from step 4 starts from zero frames again
    assert not rebuilt[4, :3].any()
    np.testing.assert_array_equal(rebuilt[4, 3], frames[4])


def test_the_policy_reads_ball_and_paddle_from_the_frame():
    frame = np.zeros((84, 84), np.uint8)
    frame[75:77, 40:48] = 200           # the paddle, centre 43.5
    assert ball_and_paddle(frame) == (None, 43.5) and tracking_action(frame) == FIRE   # no ball: launch one
    frame[60:62, 20] = 200              # the ball, left of the paddle
    assert ball_and_paddle(frame) == (20.0, 43.5) and tracking_action(frame) == LEFT
    frame[60:62, 20] = 0
    frame[50, 70:72] = 200
    assert tracking_action(frame) == RIGHT
    frame[50, 70:72] = 0
    frame[50, 44] = 200                 # under the paddle: stay
    assert tracking_action(frame) == NOOP


def test_breakout_dt_is_the_recipe(ds):
    from models.recipes import SAMPLE_AGENTS

    agent = load_agent(ROOT / "sample_data" / "agents" / "breakout-dt")
    r = SAMPLE_AGENTS["breakout-dt"]
    assert agent.config.hparams["state_encoder"] == "atari_conv" and agent.config.hparams["obs_shape"] == [4, 84, 84]
    assert agent.config.context_length == r["context"] == 10 and agent.n_layer == 2 and agent.config.env_id == ENV_ID
    assert agent.config.state_mean[:2] == [0.0, 0.0] and agent.config.state_std[:2] == [255.0, 255.0]
    # its conv encoder is alive (at the DT's default lr 1e-3 the third ReLU was 0 everywhere: a constant embedding,
    # credit exactly 0 on every pixel): units on for the dataset's frames, and frames told apart
    import torch

    with torch.no_grad():
        h = torch.tensor(ds.observations[::37][:96].astype(np.float32) / 255.0)
        for layer in agent.embed_state:
            h = layer(h)
            if layer is agent.embed_state[5]:
                assert float((h > 0).float().mean()) > 0.3
    assert float(h.std(0).mean()) > 1e-3


# The pages on breakout-dt + breakout: no exception, no error, and each page's main figure.
def _open(path: str, **state):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300)
    at.query_params.update(agent="breakout-dt", dataset="breakout")
    for key, value in state.items():   # widget values before the first run
        at.session_state[key] = value
    at.switch_page(path).run()
    return at


def _figure_titles(at) -> list[str]:
    import json

    titles = []
    for chart in at.get("plotly_chart"):
        spec = json.loads(chart.proto.spec)
        title = (spec.get("layout", {}).get("title") or {})
        titles.append((title.get("text") if isinstance(title, dict) else str(title)) or "")
    return titles


SLOW = pytest.mark.slow   # 15-40 s each on 2 shared cores (a sweep's rollouts, 2,000 windows of hidden states)
PAGE_FIGURES = [  # (page file, a main figure's title must contain this)
    ("home.py", "Episode returns"),
    ("views/1_Dataset.py", "4×84×84 frame stacks, the newest of each stack of 4 drawn"),
    pytest.param("views/2_Attention.py", "Where the action token looks over episode", marks=SLOW),
    pytest.param("views/3_Return_conditioning.py", "Return conditioning: achieved vs target return", marks=SLOW),
    ("views/4_Credit_assignment.py", "credit per pixel, the stack's 4 frames summed"),
    ("views/5_Predicted_vs_real.py", "Predicted vs real"),
    pytest.param("views/6_Embeddings.py", "DT hidden states (PCA)", marks=SLOW),
    pytest.param("views/7_Context_and_memory.py", "Action prediction vs context", marks=SLOW),
    ("views/8_Circuits.py", "Activation patching: the residual stream at each layer"),
    ("views/10_Live_play.py", "The agent's policy here"),
]


@pytest.mark.parametrize("path, title", PAGE_FIGURES)
def test_every_page_opens_on_the_breakout_example(path, title):
    # the sweep's defaults (5 targets x 8 episodes of up to 250 steps) run ~2 min here: one episode at two targets
    at = _open(path, sweep_episodes=1, sweep_targets="1, 10")
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    titles = _figure_titles(at)
    assert any(title in t for t in titles), titles


def test_the_player_shows_the_agents_view_beside_the_screen():
    from ui.player import embedded

    at = _open("views/9_Episode_player.py", player_source="rollout", player_seed=0, player_target=10.0)
    assert not at.exception and not at.error, [e.value for e in (*at.exception, *at.error)]
    data = embedded(at.get("iframe")[0].proto.srcdoc)
    assert data["frames"] and len(data["frames"]) == len(data["steps"]) and "beside" in data["why"]
    width, height = data["size"]
    assert height == 210 and width > 168 + 160   # the 84x84 view at 2x (168 px), a rule, the 210x160 screen


def test_live_play_shows_the_agents_view_beside_the_screen():
    at = _open("views/10_Live_play.py")
    assert not at.exception and not at.error, [e.value for e in (*at.exception, *at.error)]
    game = at.session_state["live_game"]
    picture = game.view_frame()
    assert game.shaped and picture.shape[0] == 210 and picture.shape[1] > 168 + 160 and len(at.get("image")) == 1
    np.testing.assert_array_equal(picture[21:189, :168, 0], np.repeat(np.repeat(game.observations[-1][-1], 2, 0), 2, 1))
