"""Issue 23 item 4 (playback and live play on grids and pixels): converted DTI and DT-Atari agents act in their own
environments (models/rollout.py), their episodes are drawn as the agent's view beside the full render
(analysis/media/frames.py, player.py), and live play runs in MiniGrid and Atari (analysis/media/live.py)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import cli
import dt_atari_reference as atari_ref
import dti_reference as dti
from models import load_agent
from models.env_choice import observation_shape
from models.rollout import episode_dataset, make_agent_env, run_episodes

MEMORY = "MiniGrid-MemoryS7FixedStart-v0"
BREAKOUT = "seqlens/DTAtari-Breakout-v0"


def dti_agent(folder, one_hot: bool, seed: int = 0, max_steps: int = 1000):
    """A DTI MemoryDT-shaped checkpoint (tests/dti_reference.py), converted: 7x7 view, 3 codes or 20 one-hot bits."""
    mc = dti.model_config(n_ctx=8)
    shape = (7, 7, 20 if one_hot else 3)
    ref = dti.DTIReference(mc, 7, shape, max_steps).randomize(seed).eval()
    path = folder / "MemoryDT.pt"
    dti.checkpoint(path, ref, dti.environment_config(MEMORY, max_steps, one_hot), mc)
    assert cli.main(["convert-agent", str(path), "--out", str(folder / "agent"), "--json"]) == 0
    return load_agent(folder / "agent")


def atari_agent(folder):
    """A DT paper Atari GPT (tests/dt_atari_reference.py) for Breakout's 4 actions, converted for Breakout."""
    model = atari_ref.randomize(atari_ref.GPT(vocab_size=4, block_size=3 * 4, n_layer=1, n_head=2, n_embd=16,
                                              max_timestep=3000), seed=3)
    g = torch.Generator().manual_seed(4)
    with torch.no_grad():   # the conv stack at std 1 / sqrt(fan-in): features O(1), not a saturated tanh
        for _, p in model.state_encoder.named_parameters():
            fan_in = p[0].numel() if p.dim() > 1 else 1
            p.copy_(torch.randn(p.shape, generator=g) * (fan_in ** -0.5 if p.dim() > 1 else 0.1))
    path = folder / "Breakout_123.pth"
    torch.save(model.state_dict(), path)
    out = folder / "agent"
    assert cli.main(["convert-agent", str(path), "--n-head", "2", "--env", BREAKOUT, "--out", str(out),
                     "--json"]) == 0
    return load_agent(out)


@pytest.fixture(scope="module")
def grid_agent(tmp_path_factory):
    return dti_agent(tmp_path_factory.mktemp("dti"), one_hot=False)


@pytest.fixture(scope="module")
def onehot_agent(tmp_path_factory):
    return dti_agent(tmp_path_factory.mktemp("dti_onehot"), one_hot=True, seed=1)


@pytest.fixture(scope="module")
def pixel_agent(tmp_path_factory):
    return atari_agent(tmp_path_factory.mktemp("atari"))


# ---- 1. rollouts in the agent's own environment ----

@pytest.mark.parametrize("which", ["grid_agent", "onehot_agent"])
def test_dti_rollout_sees_its_view(request, which):
    agent = request.getfixturevalue(which)
    assert agent.config.env_id == MEMORY
    ep = run_episodes(agent, 2, [1.0, 1.0], seed=0, env_seeds=[5, 6], record=("observations", "actions", "rewards"))
    shape = observation_shape(agent)
    assert ep.observations.shape[2:] == shape and ep.observations.dtype == np.uint8
    for i, env_seed in enumerate((5, 6)):
        env = make_agent_env(MEMORY, agent)
        first, _ = env.reset(seed=env_seed)
        assert first.shape == shape
        np.testing.assert_array_equal(ep.observations[i, 0], first)
        # the episode ran to its end: terminated before MiniGrid's 1,000 steps, or cut there
        T = int(ep.lengths[i])
        for a in ep.actions[i, :T]:
            obs, reward, term, trunc, _ = env.step(int(a))
            end = term or trunc
        assert end and (term or T == 1000)
        env.close()
    if shape[2] == 20:   # one-hot: each cell sets one bit of object, of colour and of state
        assert np.array_equal(ep.observations[0, :int(ep.lengths[0])].sum(-1), np.full((int(ep.lengths[0]), 7, 7), 3))


def test_dti_episodes_end_at_the_agents_max_steps(tmp_path):
    agent = dti_agent(tmp_path, one_hot=False, seed=2, max_steps=6)   # DTI's environment_config max_steps 6
    env = make_agent_env(MEMORY, agent)
    assert env.unwrapped.max_steps == 6
    env.close()
    ep = run_episodes(agent, 3, [1.0] * 3, seed=0, env_seeds=[0, 1, 2], sample=False)
    assert ep.lengths.max() <= 6 and (ep.lengths == 6).any()   # cut at 6 steps, as in DTI's env (seeds 0-2: one is)


def test_dti_episode_dataset_keeps_the_shape(grid_agent):
    one, _, asked = episode_dataset(grid_agent, 3, 1.0)
    assert one.obs_shape == (7, 7, 3) and one.observations.dtype == np.uint8 and asked[0] == 1.0
    env = make_agent_env(MEMORY, grid_agent)
    np.testing.assert_array_equal(one.observations[0], env.reset(seed=3)[0])


def test_atari_rollout_runs_to_the_end(pixel_agent):
    assert pixel_agent.config.env_id == BREAKOUT
    ep = run_episodes(pixel_agent, 1, [5.0], seed=0, env_seeds=[11], record=("observations", "actions", "rewards"))
    T = int(ep.lengths[0])
    assert ep.observations.shape == (1, T, 4, 84, 84) and ep.observations.dtype == np.uint8
    env = make_agent_env(BREAKOUT, pixel_agent)
    first, _ = env.reset(seed=11)
    np.testing.assert_array_equal(ep.observations[0, 0], first)
    assert not first[:3].any() and first[3].any()   # zero padding before the first frame
    for a in ep.actions[0, :T]:
        obs, _, term, trunc, _ = env.step(int(a))
    assert term or trunc, "the episode was cut before its end"
    assert T < pixel_agent.config.max_ep_len   # the game ended (all lives lost), not the step limit
    env.close()


# ---- 2. the agent's own view beside the full render ----

def test_grid_view_cells_are_the_codes_colours():
    from minigrid.core.constants import COLOR_TO_IDX, COLORS, OBJECT_TO_IDX

    from analysis.media.agent_view import UNSEEN, grid_view
    from envs.minigrid_dti import one_hot

    codes = np.zeros((7, 7, 3), np.uint8)                      # [x, y] as MiniGrid encodes; object 0 = unseen
    codes[:, 3:] = (OBJECT_TO_IDX["empty"], 0, 0)
    codes[0, 3:] = (OBJECT_TO_IDX["wall"], COLOR_TO_IDX["grey"], 0)
    codes[2, 4] = (OBJECT_TO_IDX["key"], COLOR_TO_IDX["green"], 0)
    codes[4, 5] = (OBJECT_TO_IDX["ball"], COLOR_TO_IDX["blue"], 0)
    codes[6, 3] = (OBJECT_TO_IDX["wall"], COLOR_TO_IDX["purple"], 0)
    tile = 16
    img = grid_view(codes, tile)
    assert img.shape == (7 * tile, 7 * tile, 3) and img.dtype == np.uint8
    assert np.array_equal(grid_view(one_hot(codes), tile), img)   # DTI's one-hot view draws the same

    def cell(x, y):   # the tile's inside, past MiniGrid's 1-px grid lines
        return img[y * tile + 2:(y + 1) * tile - 1, x * tile + 2:(x + 1) * tile - 1].reshape(-1, 3)

    def colours(x, y):
        return {tuple(p) for p in cell(x, y)}
    for x in range(7):
        for y in range(3):
            assert colours(x, y) == {UNSEEN}                   # outside the agent's sight
    assert colours(0, 4) == {tuple(COLORS["grey"])} and colours(6, 3) == {tuple(COLORS["purple"])}   # walls: filled
    for x, y, name in ((2, 4, "green"), (4, 5, "blue")):   # a key, a ball: its colour on black floor (anti-aliased)
        c = np.asarray(COLORS[name])
        px = cell(x, y).astype(int)
        assert tuple(c) in colours(x, y) and (0, 0, 0) in colours(x, y)
        assert not px[:, c == 0].any()                                   # only shades of the object's colour
    assert colours(1, 4) == {(0, 0, 0)}                                  # empty floor
    assert tuple(COLORS["red"]) in colours(3, 6)                         # the agent, bottom centre


def test_pixel_view_is_the_last_frame_enlarged():
    from analysis.media.agent_view import pixel_view, view

    stack = np.random.default_rng(0).integers(0, 256, (4, 84, 84)).astype(np.uint8)
    img = pixel_view(stack, 3)
    assert img.shape == (252, 252, 3)
    for c in range(3):
        np.testing.assert_array_equal(img[..., c], np.kron(stack[3], np.ones((3, 3), np.uint8)))
    assert view(stack, 210).shape == (168, 168, 3)       # the largest whole factor within the height asked


@pytest.mark.parametrize("which", ["grid_agent", "onehot_agent", "pixel_agent"])
def test_episode_frames_show_the_view_beside_the_full_render(request, which):
    from analysis.media import agent_view, frames

    agent = request.getfixturevalue(which)
    one, _, _ = episode_dataset(agent, 7, 1.0, limit=25)
    assert one.metadata["reset_seed"] == 7
    fr = frames.from_data(one, 0, max_frames=4)
    assert fr.ok and "beside" in fr.why and len(fr.steps) == 4
    env = make_agent_env(agent.config.env_id, agent, render_mode="rgb_array")
    env.reset(seed=7)
    renders = {}
    for t in range(int(fr.steps[-1]) + 1):
        renders[t] = env.render()
        env.step(int(one.actions[t]))
    env.close()
    for i, t in enumerate(fr.steps):
        full = renders[int(t)]
        left = agent_view.view(one.observations[int(t)], full.shape[0])
        H = fr.frames.shape[1]
        assert H == max(left.shape[0], full.shape[0])
        y = (H - left.shape[0]) // 2
        np.testing.assert_array_equal(fr.frames[i, y:y + left.shape[0], :left.shape[1]], left)
        x = fr.frames.shape[2] - full.shape[1]   # the render ends the frame (or one column before: an even width)
        right = fr.frames[i, (H - full.shape[0]) // 2:(H - full.shape[0]) // 2 + full.shape[0]]
        assert any(np.array_equal(right[:, x0:x0 + full.shape[1]], full) for x0 in (x - 1, x))
    if which == "grid_agent":
        assert fr.frames.shape[1] == 224 and left.shape == (224, 224, 3)   # 7 tiles of 32 px beside MiniGrid's 224 px
    if which == "pixel_agent":
        assert full.shape == (210, 160, 3) and left.shape == (168, 168, 3)   # Atari's colour screen; 84 px x 2
    # a dataset episode without its reset seed: the agent's view alone, and a sentence saying why
    one.metadata.pop("reset_seed")
    alone = frames.from_data(one, 0, max_frames=4)
    assert alone.ok and "cannot be re-created" in alone.why
    for i, t in enumerate(alone.steps):
        np.testing.assert_array_equal(alone.frames[i], agent_view.view(one.observations[int(t)]))


@pytest.mark.parametrize("source", ["rollout", "data"])
def test_player_page_on_a_grid_agent(grid_agent, tmp_path, monkeypatch, source):
    from trajectories.io import save_dataset
    from ui.player import embedded

    from test_page_attention import page

    from models.checkpoint import save_agent

    agent_dir = tmp_path / "memory-dt"
    save_agent(grid_agent, agent_dir)
    one, _, _ = episode_dataset(grid_agent, 2, 1.0, limit=30)
    one.metadata.pop("reset_seed")            # a dataset episode: the agent's view alone
    save_dataset(one, tmp_path / "memory.npz")
    monkeypatch.setenv("SEQLENS_LOCAL_AGENT", str(agent_dir))
    monkeypatch.setenv("SEQLENS_LOCAL_DATA", str(tmp_path / "memory.npz"))
    at = page("9_Episode_player.py", "local: memory-dt", "local: memory.npz", player_source=source, player_seed=2,
              player_target=1.0)
    assert not at.error, [e.value for e in at.error]
    data = embedded(at.get("iframe")[0].proto.srcdoc)
    assert data["frames"] and len(data["frames"]) == len(data["steps"]) and data["obs"] == [[]] * len(data["steps"])
    if source == "rollout":
        assert "beside" in data["why"] and data["size"] == [458, 224]      # the 224 px view, a rule, the 224 px render
    else:
        assert "cannot be re-created" in data["why"] and data["size"] == [224, 224]


# ---- 3. live play in MiniGrid and Atari ----

def _replayed(env_id, agent, seed, actions):
    """The observations a fresh env of the agent's gives for reset(seed) and then `actions`."""
    env = make_agent_env(env_id, agent)
    out = [env.reset(seed=seed)[0]]
    for a in actions:
        out.append(env.step(int(a))[0])
    env.close()
    return out


def _agent_choices(agent, target, observations, actions, by_agent, rewards):
    """What the agent would choose at each step (argmax), fed the same observations and rewards, with the user's
    actions taken."""
    ro = agent.start_rollout(1, [target], sample=False, seed=0)
    chosen = []
    for obs, a, mine, r in zip(observations, actions, by_agent, rewards):
        chosen.append(int(ro.act(np.asarray(obs, np.float32)[None])[0]))
        if not mine:
            ro.take(np.array([a]))
        ro.observe(np.array([r], np.float32))
    return chosen


@pytest.mark.parametrize("which, key, n_actions", [("grid_agent", 2, 7), ("pixel_agent", 1, 4)])
def test_live_play_in_minigrid_and_atari(request, which, key, n_actions):
    from analysis.media.live import LiveGame

    agent = request.getfixturevalue(which)
    env_id = agent.config.env_id
    game = LiveGame(agent, seed=4, target=1.0)
    try:
        assert game.env_id == env_id and game.shaped and game.discrete
        assert game.labels == ({MEMORY: ["left", "right", "forward", "pickup", "drop", "toggle", "done"],
                                BREAKOUT: ["NOOP", "FIRE", "RIGHT", "LEFT"]}[env_id]) and len(game.labels) == n_actions
        np.testing.assert_array_equal(game.observations[0], _replayed(env_id, agent, 4, [])[0])
        assert game.observations[0].shape == observation_shape(agent)
        game.step(key)                                   # a key: MiniGrid's forward, Breakout's FIRE
        assert game.t == 1 and game.actions == [key] and game.by_agent == [False]
        taken = game.agent_acts(3)                       # the agent's turn
        assert taken == 3 and game.t == 4 and game.by_agent == [False, True, True, True]
        expected = _replayed(env_id, agent, 4, game.actions)
        for got, want in zip(game.observations, expected):
            np.testing.assert_array_equal(got, want)
        chosen = _agent_choices(agent, 1.0, game.observations[:4], game.actions, game.by_agent, game.rewards)
        assert game.actions[1:] == chosen[1:]            # the agent's steps are its own argmax choices
        picture = game.view_frame()
        full = game.frame()
        assert picture.shape[0] == full.shape[0] and picture.shape[1] > full.shape[1]
        one = game.to_dataset()
        assert one.obs_shape == observation_shape(agent) and one.observations.dtype == np.uint8
    finally:
        game.close()


def test_a_minigrid_env_id_for_a_view_it_cannot_give_is_one_sentence(grid_agent):
    from dataclasses import replace

    from models.checkpoint import check_env
    from models.errors import AgentError

    assert check_env(grid_agent.config, "memory-dt") == []                      # the 7x7x3 view: fits
    bad = replace(grid_agent.config, hparams={**grid_agent.config.hparams, "obs_shape": [7, 7, 4]}, obs_dim=196)
    with pytest.raises(AgentError) as err:
        check_env(bad, "memory-dt")
    assert str(err.value) == ("memory-dt: config.json's env_id MiniGrid-MemoryS7FixedStart-v0 gives a MiniGrid view of "
                              "shape (7, 7, 3) but the agent expects (7, 7, 4).")


def test_live_play_page_on_a_grid_agent(grid_agent, tmp_path, monkeypatch):
    from models.checkpoint import save_agent
    from trajectories.io import save_dataset

    from test_page_attention import page

    save_agent(grid_agent, tmp_path / "memory-dt")
    one, _, _ = episode_dataset(grid_agent, 2, 1.0, limit=10)
    save_dataset(one, tmp_path / "memory.npz")
    monkeypatch.setenv("SEQLENS_LOCAL_AGENT", str(tmp_path / "memory-dt"))
    monkeypatch.setenv("SEQLENS_LOCAL_DATA", str(tmp_path / "memory.npz"))
    at = page("10_Live_play.py", "local: memory-dt", "local: memory.npz", live_seed=4)
    assert not at.error, [e.value for e in at.error]
    actions = [b.label for b in at.button if b.key[len("live_a"):].isdigit()]
    assert actions == ["left", "right", "forward", "pickup", "drop", "toggle", "done"]
    at.button(key="live_a2").click().run()                   # forward
    assert not at.exception, at.exception
    at.number_input(key="live_n").set_value(2).run()
    at.button(key="live_agent").click().run()
    assert not at.exception, at.exception
    game = at.session_state["live_game"]
    assert game.actions[0] == 2 and game.by_agent == [False, True, True]
    for got, want in zip(game.observations, _replayed(MEMORY, grid_agent, 4, game.actions)):
        np.testing.assert_array_equal(got, want)
    picture = game.view_frame()
    assert picture.shape == (224, 458, 3) and len(at.get("image")) == 1
