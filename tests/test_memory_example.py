"""The shipped MiniGrid memory example (issue 23, item 5): the `memory` dataset (DTI's fixed-start Memory env, one-hot
views as DTI's MemoryDT saw them) and the `memory-dt` agent trained on it; every page opens on them.

What the agent shows (README, "The MiniGrid memory example"): conditioned on return 1 it reaches the matching object
in most of 50 seeded episodes and at return 0 goes to the wrong one more often; the split step's action follows the
cue seen at step 0 only (patching that state token from a key episode into the matching ball episode flips the split
action's logit difference back), with the split step's action-predicting token attending to step 0 above uniform.
On the 3-code views the same recipe stayed at chance at the split (0.48-0.52 at both targets, 3,000-10,000 steps):
the cue was one input, object code 5 vs 6, beside a much larger step-0 shift of the same cell.
"""
from pathlib import Path

import numpy as np
import pytest
import torch

from analysis.core.inputs import training_data
from analysis.interp.attention import by_steps_back, window_attention
from analysis.interp.patching import Patcher, make_pair, readout
from models import load_agent, rollout
from trajectories import load_dataset
from trajectories.samples import SAMPLE_DIR

AGENT_DIR = Path(__file__).resolve().parent.parent / "sample_data" / "agents" / "memory-dt"
ENV_ID = "MiniGrid-MemoryS7FixedStart-v0"
FORWARD = 2
SPLIT = 4            # the optimal path: forward x4 to the split cell, a turn towards one end, forward
SEEDS = 50


@pytest.fixture(scope="module")
def agent():
    return load_agent(AGENT_DIR)


@pytest.fixture(scope="module")
def ds():
    return load_dataset(SAMPLE_DIR / "memory.npz")


def test_shipped_memory_dataset(ds):
    # 20 bits a cell (DTI's one-hot: 11 objects, 6 colours, 3 states) is a grid, not a stack of 20 frames
    assert ds.obs_shape == (7, 7, 20) and ds.observations.dtype == np.uint8 and ds.obs_kind == "grids"
    assert set(np.unique(np.asarray(ds.observations))) == {0, 1}
    assert ds.env_id == ENV_ID and ds.n_actions == 7 and ds.n_episodes == 250
    assert sorted(ds.obs_extras) == ["direction", "mission"] and len(ds.missions) == 1
    cue, matched = np.asarray(ds.metadata["cue"]), np.asarray(ds.metadata["matched"])
    assert set(cue) == {"key", "ball"} and len(cue) == ds.n_episodes
    # the chosen end decides the return: matched episodes (~70%) earn MiniGrid's 1 - 0.9 t / T, the rest 0; a random
    # step may land on the end not chosen (none of these 250 episodes; 5 of 1,500 at the 3-code dataset's 15%)
    earned = ds.episode_returns > 0
    assert np.mean(earned == matched) >= 0.99 and 0.65 < matched.mean() < 0.75


def test_memory_dataset_regenerates_exactly_from_its_seed(ds):
    from envs.behaviour import SHAPED_SAMPLES, memory_dataset

    builder, episodes, seed = SHAPED_SAMPLES["memory"]
    assert builder == "memory_dataset" and memory_dataset(episodes, seed=seed).equals(ds)
    assert ds.mapped   # stored uncompressed: the views are mapped, not decoded


def test_config_scale_and_encoder_come_from_the_shape(agent, ds):
    cfg = agent.config
    assert cfg.hparams["obs_shape"] == [7, 7, 20] and cfg.hparams["state_encoder"] == "grid"
    flat = ds.flat_observations.astype(np.float64)   # 2 MB here: the reference the streamed statistics must equal
    std = flat.std(0)
    assert np.allclose(cfg.state_mean, flat.mean(0), atol=1e-9)
    assert np.allclose(cfg.state_std, np.where(std > 1e-6, std, 1.0), atol=1e-9)
    assert cfg.context_length == 12 and agent.n_layer == 2 and cfg.env_id == ENV_ID
    # the timestep table spans the env's own step limit (DTI's factory: 1,000), not the longest logged episode: a
    # rollout's later steps are not clipped onto one row
    assert cfg.max_ep_len == 1000


def _play(agent, target: float):
    ep = rollout.run_episodes(agent, SEEDS, np.full(SEEDS, target), seed=0, sample=False, env_id=ENV_ID)
    limit = rollout.episode_limit(ENV_ID, agent)
    matched = ep.returns > 0
    wrong = (ep.returns == 0) & (ep.lengths < limit)    # ended at the other object (not cut at the limit)
    return matched.mean(), wrong.mean()


def test_return_conditioning_reaches_the_matching_object(agent):
    matched_1, wrong_1 = _play(agent, 1.0)
    matched_0, wrong_0 = _play(agent, 0.0)
    assert matched_1 >= 0.9, matched_1
    assert wrong_0 >= wrong_1 + 0.3, (wrong_0, wrong_1)
    assert matched_0 <= matched_1 - 0.3, (matched_0, matched_1)


def _split_pairs(ds, n: int = 12):
    """(key episode, ball episode) pairs that walk the optimal path to the matching end with the same layout of ends
    (both matched, opposite turns at the split): their windows at the split differ only in the step-0 view."""
    cue = np.asarray(ds.metadata["cue"])
    acts = np.asarray(ds.actions)
    by = {"key": [], "ball": []}
    for e in range(ds.n_episodes):
        s, length = int(ds.episode_starts[e]), int(ds.episode_lengths[e])
        a = acts[s:s + length]
        if length == 6 and ds.episode_returns[e] > 0 and list(a[:SPLIT]) == [FORWARD] * SPLIT and a[SPLIT] in (0, 1):
            by[str(cue[e])].append((e, int(a[SPLIT])))
    pairs = []
    for k, ka in by["key"]:
        ball = next((b for b, ba in by["ball"] if ba != ka and b not in [p[1] for p in pairs]), None)
        if ball is not None:
            pairs.append((k, ball, ka))
        if len(pairs) == n:
            break
    return pairs


def _logit_difference(agent, ds, data, key_ep: int, ball_ep: int, key_turn: int):
    """The split step's logit(key episode's turn) - logit(the other turn): clean (key cue), corrupted (ball cue),
    and corrupted with step 0's state token patched from clean in the embedding (blocks.0.resid_pre)."""
    pair = make_pair(agent, ds, episode=key_ep, step=SPLIT, corrupt="episode", corrupt_episode=ball_ep, data=data)
    readings = []
    for action in (key_turn, 1 - key_turn):
        p = Patcher(agent, pair, readout(agent, "action", action))
        mask = torch.zeros((1, p.tokens(pair.steps)), dtype=torch.bool)
        mask[0, 1] = True                         # tokens R0 s0 a0 ...: s0, the view holding the cue
        readings.append([p.clean, p.corrupted, float(p.patched({"blocks.0.resid_pre": mask})[0])])
    r = np.asarray(readings)
    return r[0] - r[1]                            # [clean, corrupted, patched]


def test_the_split_action_follows_the_cue_at_step_0(agent, ds):
    data = training_data(agent, ds)
    pairs = _split_pairs(ds)
    assert len(pairs) == 12
    d = np.array([_logit_difference(agent, ds, data, *p) for p in pairs])
    clean, corrupted, patched = d[:, 0], d[:, 1], d[:, 2]
    assert np.all(clean > 0) and np.all(corrupted < 0)    # the turn follows the cue in both episodes
    assert np.mean(patched > 0) >= 0.9                     # the step-0 view alone flips the ball episode's turn back
    restored = float(np.sum(patched - corrupted) / np.sum(clean - corrupted))
    assert restored >= 0.8, restored


def test_the_split_step_attends_to_step_0(agent, ds):
    data = training_data(agent, ds)
    pairs = _split_pairs(ds)
    shares = []
    for key_ep, ball_ep, _ in pairs:
        for e in (key_ep, ball_ep):
            att = window_attention(agent, ds, episode=e, step=SPLIT, data=data)
            shares.append(by_steps_back(att)[:, :, SPLIT].mean(-1))   # [layers]: share on step 0's three tokens
    shares = np.array(shares)
    uniform = 3 / (3 * SPLIT + 2)                  # 14 keys up to the split's s_t token, 3 of them step 0's
    best = shares.mean(0).max()
    assert best >= 2 * uniform, (shares.mean(0), uniform)


def _shaped(obs: np.ndarray):
    from trajectories import Dataset

    n = len(obs)
    term = np.zeros(n, bool)
    term[-1] = True
    return Dataset(obs, np.arange(n) % 3, np.ones(n, np.float32), term, np.zeros(n, bool), np.array([0]), n_actions=3)


@pytest.mark.parametrize("shape, encoder, mean, std", [((5, 5, 3), "grid", 3.0, 1.0), ((5, 5, 20), "grid", 3.0, 1.0),
                                                       ((4, 84, 84), "atari_conv", 0.0, 255.0),
                                                       ((40, 40, 3), "grid", 0.0, 255.0), ((4, 5, 20), "grid", 0.0, 255.0)])
def test_make_config_on_shaped_data(shape, encoder, mean, std, monkeypatch):
    import models.train as train

    # grids (3 codes or DTI's 20 one-hot bits a cell): per-cell statistics streamed in blocks (here of 3 rows: the sums
    # span blocks); constant cells: std 1. images and frame stacks (4x84x84, grids wider than 32 cells, 4 stacked
    # 5x20 frames): the fixed 0 / 255 of the DT paper
    monkeypatch.setattr(train, "STATS_ROWS", 3)
    obs = np.full((8, *shape), 3, np.uint8)
    cfg = train.make_config("dt", _shaped(obs))
    n = int(np.prod(shape))
    assert cfg.hparams["obs_shape"] == list(shape) and cfg.hparams["state_encoder"] == encoder
    assert cfg.state_mean == [mean] * n and cfg.state_std == [std] * n


def test_grid_statistics_streamed_over_blocks_equal_the_whole_array(monkeypatch):
    import models.train as train

    monkeypatch.setattr(train, "STATS_ROWS", 4)
    obs = np.random.default_rng(0).integers(0, 11, (10, 3, 3, 3)).astype(np.uint8)
    obs[:, 0, 0, 0] = 7                                   # a constant cell: std 1, not 0
    cfg = train.make_config("dt", _shaped(obs))
    flat = obs.reshape(10, -1).astype(np.float64)
    std = flat.std(0)
    assert np.allclose(cfg.state_mean, flat.mean(0)) and np.allclose(cfg.state_std, np.where(std > 1e-6, std, 1.0))
    assert cfg.state_std[0] == 1.0


def test_make_config_keeps_an_encoder_the_caller_chose():
    from models.train import make_config

    cfg = make_config("dt", _shaped(np.zeros((3, 7, 7, 3), np.uint8)), hparams={"state_encoder": "linear"})
    assert cfg.hparams["state_encoder"] == "linear" and cfg.hparams["obs_shape"] == [7, 7, 3]


# What each page says about memory-dt on memory where it cannot serve a grid agent yet (one sentence, no exception);
# the test fails when a page raises, or when its errors name anything else.
def _page_texts(at) -> list[str]:
    return [e.value for e in (*at.error, *at.warning, *at.info)]


def _open_pages():
    from streamlit.testing.v1 import AppTest

    from ui.nav import PAGES

    root = Path(__file__).resolve().parent.parent
    for path, title, _, _ in PAGES:
        at = AppTest.from_file(str(root / "app.py"), default_timeout=300)
        at.query_params.update(agent="memory-dt", dataset="memory")
        at.switch_page(path).run()
        yield title, at


def test_every_page_opens_on_the_memory_example():
    said, headers = {}, {}
    for title, at in _open_pages():
        assert not at.exception, (title, [e.value for e in at.exception])
        said[title] = _page_texts(at)
        headers[title] = [h.value for h in at.subheader]
        assert all(len(t) < 400 for t in said[title]), (title, said[title])
    # Credit assignment serves a grid DT with credit on its cells (analysis/interp/spatial_credit.py), no stop
    assert "Which cells or pixels: credit on the observations" in headers["Credit assignment"], headers
    assert not said["Credit assignment"], said["Credit assignment"]
    print(said)
