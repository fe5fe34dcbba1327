"""Episode player (issue 16): analysis/media/player.py's per-step data against the analyses it reuses (frames bit-equal to
analysis.media.frames, attention to analysis.interp.attention, credit to analysis.interp.attribution, predictions to analysis.behaviour.predictions),
its bounds and cache, and the page in AppTest: the component embeds one frame per step and real attention rows; a
dataset that cannot be drawn gets the sentence and the state-line plot."""
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from analysis.media import player
from analysis.core.cache import CACHE
from models import load_agent
from trajectories import Dataset, load_dataset
from trajectories.samples import sample_datasets
from ui.player import embedded, html

from test_page_attention import page as shared_page

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "views" / "9_Episode_player.py"


@pytest.fixture(scope="module")
def cartpole():
    return load_agent(ROOT / "sample_data/agents/cartpole-dt"), load_dataset(sample_datasets()["cartpole"])


def tiny_undrawable(n_names=None) -> Dataset:
    """Two hand-made episodes of 4 features with no environment named: nothing can draw them."""
    rng = np.random.default_rng(3)
    obs = rng.normal(size=(42, 4)).astype(np.float32)
    actions = rng.integers(0, 2, 42)
    terminated = np.zeros(42, bool)
    terminated[[29, 41]] = True
    return Dataset(obs, actions, np.ones(42, np.float32), terminated, np.zeros(42, bool), np.array([0, 30]),
                   obs_names=n_names, env_id=None, source="tiny.csv")


def page(agent: str, dataset: str, uploads: dict | None = None, query: dict | None = None, **state) -> AppTest:
    return shared_page(PAGE.name, agent, dataset, uploads=uploads, query=query, **state)


def component(at) -> dict:
    frames = at.get("iframe")
    assert len(frames) == 1
    return embedded(frames[0].proto.srcdoc)


# ---- analysis/media/player.py -------------------------------------------------------------------------------------
def test_player_data_equals_the_analyses_it_reuses(cartpole):
    from analysis.media import frames
    from analysis.interp.attention import steps_attention
    from analysis.interp.attribution import attribute_steps
    from analysis.core.inputs import training_data
    from analysis.behaviour.predictions import dt_return_predictions

    agent, ds = cartpole
    d = player.build(agent, ds, 3)                       # 65 steps
    one = ds.select([3])
    T = one.n_transitions
    assert d.n == d.length == T and len(d.frames) == T and d.frame_size == (600, 400) and not d.notes
    assert d.display_size == (432, 288)
    ref = frames.from_data(one, 0)
    for i in (0, 31, T - 1):                             # lossless: the frames the browser gets are the rendered ones
        assert np.array_equal(player.decode_frame(d.frames[i]), ref.frames[i])
    att = steps_attention(agent, training_data(agent, one), np.arange(T)).mean((1, 2))
    assert np.allclose(d.attention, att) and np.allclose(d.attention.sum((1, 2)), 1, atol=1e-5)
    step = 40
    res = attribute_steps(agent, one, [step], method="saliency", randomized=False)[0]
    tok = res.trained.per_token()[::-1]
    assert np.allclose(d.credit[step], tok / tok.sum()) and np.allclose(d.credit.sum((1, 2)), 1)
    assert d.credit[3, 4:].sum() == 0                    # steps before the episode get no credit
    next_return, implied = dt_return_predictions(agent, one, 0)
    p = d.prediction
    assert p["kind"] == "return" and np.allclose(p["predicted"][:, 0], next_return) and np.allclose(p["predicted"][:, 1], implied)
    assert np.allclose(p["real"][:-1, 0], one.returns_to_go[1:]) and p["real"][-1, 0] == 0
    assert d.actions[0] in ("push left", "push right") and np.array_equal(d.rewards, one.rewards)


def test_one_step_predictions_of_a_dynamics_model():
    from analysis.behaviour.predictions import dynamics_rollout

    agent = load_agent(ROOT / "sample_data/agents/pendulum-dynamics")
    ds = load_dataset(sample_datasets()["pendulum"])
    d = player.build(agent, ds, 0)
    one = ds.select([0])
    o, r = dynamics_rollout(agent, one.observations[[7]], one.actions[[7]][:, None])
    p = d.prediction
    assert p["kind"] == "state" and p["features"] == [*one.obs_names, "reward"]
    assert np.allclose(p["predicted"][7, :-1], o[0, 0]) and np.isclose(p["predicted"][7, -1], r[0, 0])
    assert np.allclose(p["real"][7, :-1], one.observations[8]) and np.isnan(p["predicted"][-1, :-1]).all()
    assert d.attention is None and d.credit is None and "dynamics model" in d.notes[0]


def test_bounds_cut_steps_and_credit_with_a_sentence(cartpole, monkeypatch):
    agent, ds = cartpole
    monkeypatch.setattr(player, "MAX_CREDIT_STEPS", 4)
    d = player.build(agent, ds, 3, max_frames=10)
    assert d.n == 10 and len(d.frames) == 10 and d.steps[0] == 0 and d.steps[-1] == 64
    assert "more than the 10 frames drawn at most" in d.notes[0]
    assert "Credit is computed at 4 evenly spaced steps of the 10 shown" in d.notes[1]
    computed = ~np.isnan(d.credit[:, 0, 0])
    assert computed.sum() == 4 and computed[0] and computed[-1]


def test_cached_by_content_and_never_shared(cartpole):
    agent, ds = cartpole
    CACHE.clear()
    a = player.player_data(agent, ds, 2)
    a.attention[:] = -1                                  # a caller changing its copy
    a.frames.clear()
    b = player.player_data(agent, ds, 2)
    assert b.attention.min() >= 0 and len(b.frames) == b.n
    assert sum(k.startswith("player|") for k in CACHE.keys()) == 1


def test_names_from_a_file_cannot_break_out_of_the_component():
    ds = tiny_undrawable(["</script><script>alert(1)</script>", "b", "c", "d"])
    text = html(player.build(None, ds, 0))
    assert "<script>alert" not in text and text.count("</script>") == 2
    assert embedded(text)["obs_names"][0] == "</script><script>alert(1)</script>"


# ---- the page ---------------------------------------------------------------------------------------------------
def test_page_cartpole_dt_embeds_a_frame_per_step_and_real_attention(cartpole):
    agent, ds = cartpole
    at = page("cartpole-dt", "cartpole", player_episode=3)
    d = component(at)
    T = int(ds.episode_lengths[3])
    assert len(d["frames"]) == len(d["steps"]) == len(d["attention"]) == len(d["credit"]) == T
    assert d["mime"] == "image/webp" and d["size"] == [600, 400] and d["display"] == [432, 288]
    att = np.array(d["attention"])                      # [T, K, 3], rounded to 4 decimals for the browser
    assert np.allclose(att.sum((1, 2)), 1, atol=1e-3)
    from analysis.interp.attention import steps_attention
    from analysis.core.inputs import training_data

    one = ds.select([3])
    ref = steps_attention(agent, training_data(agent, one), np.array([30]))[0].mean((0, 1))
    assert np.allclose(att[30], ref, atol=1e-4)
    assert at.query_params["episode"] in ("3", ["3"])
    assert "Drawn by CartPole-v1 from the logged observations." in at.caption[1].value
    assert not at.info


def test_page_keydoor_dt_renders_with_value_credit():
    at = page("keydoor-dt", "keydoor", query={"episode": "2"}, player_credit="value")   # a link naming the episode
    d = component(at)
    assert d["episode"] == 2 and at.number_input(key="player_episode").value == 2
    assert len(d["frames"]) == len(d["steps"]) == d["length"] and d["size"] == [80, 96] and d["display"] == [240, 288]
    assert "for the value" in d["credit_label"] and d["prediction"]["kind"] == "return"


def test_page_upload_naming_no_environment_is_drawn_in_the_agents():
    """Issue 27: a CSV upload names no environment, but cartpole-dt names CartPole-v1, whose state is the upload's 4
    observations: the player draws its frames (bit-equal to frames.from_data in that environment), says once where
    they come from, and the episode video download has them too."""
    from dataclasses import replace

    from analysis.media.frames import from_data
    from analysis.media.player import decode_frame

    tiny = tiny_undrawable()
    # episode 7, chosen on a longer dataset, is clamped to this one's last
    at = page("cartpole-dt", "upload: tiny.csv", uploads={"tiny.csv": tiny}, player_episode=7)
    d = component(at)
    assert d["frames"] is not None and len(d["frames"]) == len(d["steps"]) == 12 and len(d["attention"]) == 12
    want = from_data(replace(tiny, env_id="CartPole-v1"), 1)
    assert all(np.array_equal(decode_frame(f), w) for f, w in zip(d["frames"], want.frames))
    assert d["why"] == "Drawn by CartPole-v1 from the logged observations." and not at.info
    said = [c.value for c in at.caption if "names no environment" in c.value]
    assert len(said) == 1 and "CartPole" in said[0] and "the agent's" in said[0]


def test_page_without_frames_says_why_once_and_shows_state_lines(monkeypatch):
    """Issue 27: the sentence saying why there are no frames appeared twice (an info box above the player and the
    player's own line); now only the player says it, above the state lines that stand in."""
    from analysis.media import frames

    CACHE.clear()
    monkeypatch.setattr(frames, "make_render_env", lambda *a, **k: (None, "no renderer here"))
    at = page("cartpole-dt", "upload: tiny.csv", uploads={"tiny.csv": tiny_undrawable()}, player_episode=1)
    d = component(at)
    assert d["frames"] is None and len(d["obs"]) == len(d["steps"]) == 12 and len(d["obs"][0]) == 4
    assert "no renderer here" in d["why"]
    shown = [e.value for kind in ("info", "warning", "caption", "markdown") for e in at.get(kind)]
    assert not any("no renderer here" in v for v in shown)             # said once: in the player
    assert not at.info
    CACHE.clear()


def test_imagined_continuation_is_drawn_from_the_models_states():
    """Issue 16 item 3 inside the player: a TT's open-loop continuation from a step, beside the logged frames."""
    from analysis.media import frames
    from analysis.behaviour.predictions import predicted_vs_real

    agent = load_agent(ROOT / "sample_data/agents/masked-pendulum-tt")
    ds = load_dataset(sample_datasets()["masked-pendulum"])
    d = player.build(agent, ds, 0, imagine=(30, 20))
    one = ds.select([0])
    res = predicted_vs_real(agent, one, 0, start=30, horizon=20)
    p, im = d.prediction, d.imagined
    assert p["kind"] == "state" and "imagined from step 30 for 20 steps" in p["label"]
    assert np.allclose(p["predicted"], res.predicted, equal_nan=True) and np.allclose(p["real"], res.real)
    drawn = [i for i, f in enumerate(im["frames"]) if f is not None]
    assert drawn == list(range(30, 51)) and im["why"] is None
    dream = one.select([0])
    dream.observations[35] = res.predicted[35, :-1]      # the state the model imagined at step 35, drawn
    want = frames.from_data(dream, 0, start=35, stop=36).frames[0]
    assert np.array_equal(player.decode_frame(im["frames"][35]), want)
    assert not np.array_equal(want, player.decode_frame(d.frames[35]))   # and it is not the logged one
    with pytest.raises(player.PlayerError, match="must start at a step from 0 to 198"):
        player.build(agent, ds, 0, imagine=(199, 5))


def test_page_imagined_mode_for_a_trajectory_transformer():
    at = page("masked-pendulum-tt", "masked-pendulum", player_predict="imagine", player_from=30, player_horizon=20)
    d = component(at)
    assert d["imagined"]["start"] == 30 and sum(f is not None for f in d["imagined"]["frames"]) == 21
    assert d["attention"] is None and d["credit"] is None and len(d["frames"]) == len(d["steps"])


# ---- the agent acting (rollout source) and the episode's downloads ------------------------------------------------
def test_rollout_source_shows_the_attention_the_agent_acted_with(cartpole):
    """Reset seed 2: cartpole-dt earns its target 500, so the hindsight return-to-go the offline analyses read equals
    the one it was asked for, and its attention as it acted (recorded by the rollout, oldest step first) equals
    steps_attention on the rolled-out episode (now first)."""
    from analysis.interp.attention import steps_attention
    from analysis.core.inputs import training_data
    from models.rollout import episode_dataset

    agent, _ = cartpole
    d = player.build(agent, None, rollout=(2, 500.0))
    one, _, asked = episode_dataset(agent, 2, 500.0, seed=2)
    assert d.length == one.n_transitions == 500 and d.title.startswith("The agent acting: a rollout in CartPole-v1")
    ref = steps_attention(agent, training_data(agent, one), d.steps).mean((1, 2))
    assert np.allclose(d.attention, ref, atol=1e-4)
    assert np.allclose(d.rtg, 500.0 - np.arange(500)) and np.array_equal(asked, d.rtg) and "the same" in d.notes[-1]
    short = player.build(agent, None, rollout=(5, 500.0))      # it falls at 183: asked 500, earned 183
    assert short.length == 183 and "+317 apart" in short.notes[-1]
    with pytest.raises(player.PlayerError, match="beam search"):
        player.build(load_agent(ROOT / "sample_data/agents/pendulum-tt"), None, rollout=(0, None))
    with pytest.raises(player.PlayerError, match="acts in an environment"):
        player.build(load_agent(ROOT / "sample_data/agents/pendulum-dynamics"), None, rollout=(0, None))


def test_page_plays_the_agent_acting_and_offers_its_video():
    at = page("cartpole-dt", "cartpole", player_source="rollout", player_seed=5)
    d = component(at)
    assert d["length"] == 183 and d["title"].startswith("The agent acting")
    keys = [b.proto.id for b in at.get("download_button")]
    for fmt in ("gif", "mp4", "csv"):
        assert any(f"player_video_{fmt}" in k for k in keys), keys
    [bundle] = [b for b in at.get("download_button") if "bundle_Episode player" in b.proto.id]
    assert "(zip: GIF, MP4, CSV + manifest)" in bundle.proto.label


def test_page_video_download_is_the_catalogs_episode_video(cartpole, monkeypatch):
    """The page's downloads are the catalog's episode_video of the episode shown (what `cli.py export --figure
    episode_video` writes): its GIF has a frame per step."""
    import imageio.v3 as iio

    from analysis.publish import catalog
    from analysis.publish.export import figured_bytes

    made, real = [], catalog.make
    monkeypatch.setattr(catalog, "make", lambda name, *a, **kw: made.append((name, kw, real(name, *a, **kw))) or made[-1][2])
    CACHE.clear()
    agent, ds = cartpole
    at = page("cartpole-dt", "cartpole", player_episode=4)
    assert not at.exception
    [(name, kw, f)] = [m for m in made if m[0] == "episode_video"]
    assert kw == {"episode": 4, "width": 720} and f.params["episode"] == 4    # issue 27: downloads >= 720 px wide
    frames = iio.imread(figured_bytes(f, "gif"), index=None)
    assert len(frames) == int(ds.episode_lengths[4]) and frames.shape[2] == 720


def test_a_mujoco_episode_is_drawn_fast_small_and_lossy_with_its_steps_bounded(tmp_path, monkeypatch):
    """A D4RL MuJoCo episode: frames drawn without shadows at the height shown, lossy WebP (a lossless Hopper frame
    was ~86 KB at 480 px: a 1,000-step episode sent 86 MB), at most MAX_MUJOCO_FRAMES evenly spaced steps."""
    from test_frames import _gl_ok, _hopper_d4rl

    if _gl_ok():
        pytest.skip(_gl_ok())
    _hopper_d4rl(tmp_path / "hopper-random-v2.hdf5", steps=24)
    ds = load_dataset(tmp_path / "hopper-random-v2.hdf5")
    monkeypatch.setattr(player, "MAX_MUJOCO_FRAMES", 4)
    d = player.build(None, ds, 1)
    assert d.steps.tolist() == [0, 4, 7, 11] and "more than the 4 frames drawn at most" in d.notes[0]
    assert d.frame_size == (player.DISPLAY_HEIGHT, player.DISPLAY_HEIGHT) and d.frame_mime == "image/webp"
    sizes = [len(f) * 3 / 4 for f in d.frames]
    assert max(sizes) < 30_000
    fast = player._frames.from_data(ds.select([1]), 0, height=player.DISPLAY_HEIGHT, fast=True, max_frames=4)
    err = np.abs(player.decode_frame(d.frames[2]).astype(int) - fast.frames[2]).mean()
    assert 0 < err < 4          # lossy, and close to the frame drawn


@pytest.mark.slow
@pytest.mark.skipif(not Path("/usr/bin/chromium").exists(), reason="needs Debian's chromium")
def test_the_scrubber_spans_the_player_in_chromium(cartpole):
    """Issue 27: the scrubber sat beside the buttons under the 432 px frame, 120 px for 500 steps. Drawn in Chromium
    at two widths, it spans the player's width: at least a pixel per step of a 500-step episode, and moving it moves
    the step."""
    from playwright.sync_api import sync_playwright

    from bench.browser_pages import CHROMIUM_ARGS

    agent, ds = cartpole
    first = int(np.flatnonzero(ds.episode_lengths == 500)[0])
    doc = html(player.build(agent, ds, first))
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        try:
            for width in (1000, 1400):
                page = browser.new_page(viewport={"width": width, "height": 900})
                page.set_content(doc)
                box = page.locator("#scrub").bounding_box()
                whole = page.locator("#player").bounding_box()
                assert box["width"] >= 0.9 * whole["width"] and box["width"] >= 500, (width, box, whole)
                page.locator("#scrub").fill("250")
                assert page.locator("#status").inner_text().startswith("step 250") or "250" in page.locator("#status").inner_text()
                page.close()
        finally:
            browser.close()
