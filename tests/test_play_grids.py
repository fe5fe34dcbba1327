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


def dti_agent(folder, one_hot: bool, seed: int = 0):
    """A DTI MemoryDT-shaped checkpoint (tests/dti_reference.py), converted: 7x7 view, 3 codes or 20 one-hot bits."""
    mc = dti.model_config(n_ctx=8)
    shape = (7, 7, 20 if one_hot else 3)
    ref = dti.DTIReference(mc, 7, shape, 1000).randomize(seed).eval()
    path = folder / "MemoryDT.pt"
    dti.checkpoint(path, ref, dti.environment_config(MEMORY, 1000, one_hot), mc)
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
