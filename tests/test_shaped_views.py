"""Per-token views on agents that read grids and frame stacks (issue 23): memory-dt (shipped, 7x7x20 one-hot MiniGrid grids) and
a tiny random-weight atari_conv DT (the DT paper's encoder over 4x84x84 frame stacks). Every analysis gives finite values
of the shape the agent implies: attention, head/MLP ablation, direct logit attribution, activation patching,
embeddings, the offline return-to-go replay and the return sweep."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from models import load_agent
from models.base import AgentConfig
from models.decision_transformer import DecisionTransformer
from trajectories.dataset import Dataset

ROOT = Path(__file__).resolve().parent.parent


def atari_dt(K=3, n_actions=4, seed=0, n_layer=1, hidden=16) -> DecisionTransformer:
    """An atari_conv DT with random weights (the conv stack at std 1 / sqrt(fan-in): O(1) features, as
    tests/test_dt_atari_agent.py sets them) reading raw 0..255 frames scaled by 1/255."""
    torch.manual_seed(seed)
    config = AgentConfig(kind="dt", obs_dim=4 * 84 * 84, act_dim=1, discrete=True, n_actions=n_actions,
                         context_length=K, max_ep_len=32,
                         hparams={"hidden": hidden, "n_layer": n_layer, "n_head": 2, "obs_shape": [4, 84, 84],
                                  "state_encoder": "atari_conv"})
    config.state_mean, config.state_std = [0.0] * config.obs_dim, [255.0] * config.obs_dim
    agent = DecisionTransformer(config).eval()
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for p in agent.embed_state.parameters():
            fan_in = p[0].numel() if p.dim() > 1 else 1
            p.copy_(torch.randn(p.shape, generator=g) * (fan_in ** -0.5 if p.dim() > 1 else 0.1))
    return agent


def atari_dataset(lengths=(2, 5, 4), n_actions=4, seed=0) -> Dataset:
    """Episodes of random uint8 4x84x84 frame stacks and rewards of 0 or 1 (episode returns differ)."""
    rng = np.random.default_rng(seed)
    n = sum(lengths)
    obs = rng.integers(0, 256, (n, 4, 84, 84)).astype(np.uint8)
    done = np.zeros(n, bool)
    done[np.cumsum(lengths) - 1] = True
    return Dataset(obs, rng.integers(0, n_actions, n).astype(np.int64), rng.integers(0, 2, n).astype(np.float32), done,
                   np.zeros(n, bool), np.concatenate([[0], np.cumsum(lengths)[:-1]]), n_actions=n_actions)


def memory():
    from trajectories import load_dataset
    from trajectories.samples import sample_datasets

    return load_agent(ROOT / "sample_data/agents/memory-dt"), load_dataset(sample_datasets()["memory"])


AGENTS = ("memory", "atari")


@pytest.fixture(scope="module", params=AGENTS)
def shaped(request):
    if request.param == "memory":
        agent, ds = memory()
    else:
        agent, ds = atari_dt(), atari_dataset()
    return request.param, agent, ds


def make(name, agent, ds, **params):
    from analysis.publish import catalog

    f = catalog.make(name, agent, ds, **params)
    values = f.data.select_dtypes("number").to_numpy(float)
    assert values.size and np.isfinite(values).all(), name
    return f


def test_attention_views(shaped):
    """Attention maps over the 3K tokens, token-type and steps-back shares that sum to 1 per head, rollout and the
    episode's attention rows that sum to 1 per step."""
    _, agent, ds = shaped
    K, heads = agent.context_length, int(agent.config.hparams["n_head"])
    f = make("attention_map", agent, ds, episode=1, step=int(ds.episode_lengths[1]) - 1)
    assert len(f.data) == heads * (3 * K) ** 2 and set(f.data["layer"]) == {int(agent.config.hparams["n_layer"]) - 1}
    types = make("attention_token_types", agent, ds, episode=1).data
    assert len(types) == 3 * heads * agent.config.hparams["n_layer"]
    np.testing.assert_allclose(types.groupby(["layer", "head"])["share"].sum(), 1.0, atol=1e-5)
    back = make("attention_steps_back", agent, ds, episode=1).data
    np.testing.assert_allclose(back.groupby(["layer", "head"])["share"].sum(), 1.0, atol=1e-5)
    make("attention_rollout", agent, ds, episode=1)
    ep = make("attention_episode", agent, ds, episode=1).data
    assert sorted(set(ep["step"])) == list(range(int(ds.episode_lengths[1])))
    np.testing.assert_allclose(ep.groupby("step")["weight"].sum(), 1.0, atol=1e-5)


def test_direct_logit_attribution_adds_up_to_the_logit(shaped):
    """The parts (embedding, heads, MLPs, biases) of one action logit sum to the logit itself."""
    _, agent, ds = shaped
    d = make("direct_logit_attribution", agent, ds, episode=1).data
    n_layer, heads = int(agent.config.hparams["n_layer"]), int(agent.config.hparams["n_head"])
    assert d["part"].str.match(r"^L\d+ H\d+$").sum() == n_layer * heads and d["part"].str.endswith("MLP").sum() == n_layer
    assert d["contribution"].sum() == pytest.approx(float(d["output"].iloc[0]), rel=1e-3, abs=1e-6)
    lens = make("logit_lens", agent, ds, episode=1).data
    assert set(lens["step"]) <= set(range(int(ds.episode_lengths[1])))


def test_activation_patching(shaped):
    """Patching each head / MLP and each layer at each token position from a clean window into another episode's:
    one row per head and MLP, clean and corrupted outputs that differ, positions within the window."""
    _, agent, ds = shaped
    n_layer, heads = int(agent.config.hparams["n_layer"]), int(agent.config.hparams["n_head"])
    h = make("patching_heads", agent, ds, episode=1).data
    assert len(h) == n_layer * (heads + 1)
    assert np.all(h["clean"] != h["corrupted"])   # the two windows differ: there is an effect to measure
    pos = make("patching_positions", agent, ds, episode=1).data
    assert len(pos) and set(pos["steps_back"]) <= set(range(agent.context_length))


def test_embeddings_and_return_to_go_replay(shaped):
    """A 2-D point per dataset step; the replayed action probabilities sum to 1 at every (shift, step)."""
    _, agent, ds = shaped
    e = make("embedding", agent, ds, max_points=400).data
    assert len(e) == min(400, ds.n_transitions) and e["step"].between(0, ds.n_transitions - 1).all()
    r = make("rtg_shift_replay", agent, ds, episode=1).data
    np.testing.assert_allclose(r.groupby(["shift", "step"])["probability"].sum(), 1.0, atol=1e-5)
    assert set(r["action"]) <= set(range(int(agent.config.n_actions)))


@pytest.mark.parametrize("mode", ["zero", "mean"])
def test_head_ablation(shaped, mode):
    """Ablating the heads: intact, ablated and their difference in action accuracy on the logged steps, in [0, 1]."""
    _, agent, ds = shaped
    a = make("ablation", agent, ds, mode=mode, n_steps=200).data
    assert list(a["condition"]) == ["intact", "ablated", "ablated - intact"]
    assert a["value"].iloc[:2].between(0, 1).all()
    assert a["value"].iloc[2] == pytest.approx(a["value"].iloc[1] - a["value"].iloc[0], abs=1e-9)


def test_return_sweep_in_the_environment(shaped):
    """Rollouts at two target returns in the agent's environment (MiniGrid's memory task; Breakout for the Atari DT):
    achieved returns within the task's range."""
    name, agent, ds = shaped
    if name == "atari":
        pytest.importorskip("ale_py")
        agent.config.env_id = "seqlens/DTAtari-Breakout-v0"
    s = make("rtg_sweep_returns", agent, ds, episodes=1 if name == "atari" else 2, targets=[0.0, 1.0]).data
    assert list(s["target_return"]) == [0.0, 1.0] and (s["episodes"] > 0).all()
    assert s["mean"].between(0.0, 1.0 if name == "memory" else 500.0).all()


@pytest.mark.parametrize("which", AGENTS)
def test_context_outputs_embed_once_and_equal_each_context_alone(which):
    """context_outputs gathers and embeds windows once at the longest K' and slices the shorter ones: the same logits
    as policy_outputs run per K' (an Atari DT's conv stack: embedded frames differ only in float rounding)."""
    from analysis.behaviour.context import context_outputs, policy_outputs

    agent, ds = memory() if which == "memory" else (atari_dt(K=4, n_layer=2), atari_dataset())
    steps = np.arange(ds.n_transitions)[::2] if which == "atari" else np.arange(0, ds.n_transitions, 37)
    ks = [1, 2, 4] if which == "atari" else [1, 3, 12]
    got = context_outputs(agent, ds, steps, ks, batch_size=3)
    for k in ks:
        want = policy_outputs(agent, ds, steps, k)
        assert got[k].shape == want.shape
        assert torch.allclose(got[k], want, atol=1e-5), (k, (got[k] - want).abs().max())
    assert (got[ks[0]] - got[ks[-1]]).abs().max() > (1e-3 if which == "memory" else 1e-6)   # the contexts really differ


def test_embedded_windows_give_the_same_outputs_and_attention_as_frame_windows():
    """step_windows(embed=True) on frame stacks: each distinct frame embedded once, pads as a zero frame's embedding;
    the same action logits, return predictions and attention as windows of frames (float rounding only)."""
    from analysis.core.inputs import embeds_states, step_windows, training_data

    agent, ds = atari_dt(K=4, n_layer=2), atari_dataset()
    data = training_data(agent, ds)
    assert embeds_states(agent, data)
    steps = np.arange(ds.n_transitions)
    plain, emb = step_windows(agent, data, steps), step_windows(agent, data, steps, embed=True)
    assert emb["states"] is None and emb["state_embeds"].shape == (len(steps), 4, 16)
    assert not emb["attention_mask"].all()   # short episodes: pads in the windows
    with torch.no_grad():
        a = agent(**plain, output_attentions=True)
        b = agent(**emb, output_attentions=True)
    torch.testing.assert_close(b.action_preds, a.action_preds, atol=1e-5, rtol=0)
    torch.testing.assert_close(b.return_preds, a.return_preds, atol=1e-5, rtol=0)
    for x, y in zip(b.attentions, a.attentions):
        torch.testing.assert_close(x, y, atol=1e-5, rtol=0)
