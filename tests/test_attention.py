"""Attention analyses: known answers on hand-set weights, the batched episode pass equal to a forward per
step, attention rollout, and the Trajectory Transformer's by-dimension view."""
import numpy as np
import pytest
import torch

from analysis.interp.attention import (attention_rollout, by_steps_back, by_token_type, episode_attention, steps_attention,
                                       steps_attention_naive, tt_attention, window_attention)
from analysis.core.inputs import receptive_field, training_data
from models.base import AgentConfig
from models.decision_transformer import DecisionTransformer
from models.trajectory_transformer import TrajectoryTransformer
from trajectories import Dataset


def episodes_dataset(lengths=(3, 9, 14, 6), obs_dim=3, n_actions=2, seed=0) -> Dataset:
    rng = np.random.default_rng(seed)
    n = sum(lengths)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    term = np.zeros(n, bool)
    term[np.cumsum(lengths) - 1] = True
    return Dataset(rng.normal(size=(n, obs_dim)).astype(np.float32), rng.integers(0, n_actions, n),
                   rng.normal(size=n).astype(np.float32), term, np.zeros(n, bool), starts, source="hand-made")


def make_dt(K=4, n_layer=1, n_head=1, banded=True, seed=0, spread=0.3) -> DecisionTransformer:
    torch.manual_seed(seed)
    cfg = AgentConfig(kind="dt", obs_dim=3, act_dim=1, discrete=True, n_actions=2, context_length=K, max_ep_len=64,
                      rtg_scale=10.0, hparams={"hidden": 16, "n_layer": n_layer, "n_head": n_head, "banded": banded})
    m = DecisionTransformer(cfg)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(torch.randn_like(p) * spread)
    return m.eval()


def uniform_dt(K=4) -> DecisionTransformer:
    """Queries and keys all zero: every token attends uniformly to the tokens it may see."""
    m = make_dt(K)
    with torch.no_grad():
        for block in m.encoder["h"]:
            block.attn.c_attn.weight[:2 * 16].zero_()
            block.attn.c_attn.bias[:2 * 16].zero_()
    return m


def test_uniform_attention_gives_known_shares():
    K = 4
    m, ds = uniform_dt(K), episodes_dataset()
    att = window_attention(m, ds, episode=2, step=10)              # a full window: K steps, 3K - 1 tokens visible
    n = 3 * K - 1
    np.testing.assert_allclose(by_token_type(att)[0, 0], [K / n, K / n, (K - 1) / n], atol=1e-6)
    np.testing.assert_allclose(by_steps_back(att)[0, 0], [2 / n] + [3 / n] * (K - 1), atol=1e-6)
    early = window_attention(m, ds, episode=2, step=1)               # left padding: 5 tokens visible
    np.testing.assert_allclose(by_steps_back(early)[0, 0], [2 / 5, 3 / 5, 0, 0], atol=1e-6)
    assert early.valid.sum() == 6 and att.labels[-2] == "s t" and att.labels[0] == "R t-3"


def test_episode_pass_equals_a_forward_per_step_banded_and_hf_style():
    ds = episodes_dataset()
    for banded in (True, False):
        m = make_dt(K=3, n_layer=2, n_head=2, banded=banded)
        data = training_data(m, ds)
        steps = np.array([0, 2, 3, 5, 11, 12, 13, 20, 25, 26, 31])   # across episodes, out of order of length
        fast, naive = steps_attention(m, data, steps), steps_attention_naive(m, data, steps)
        assert fast.shape == (len(steps), 2, 2, 3, 3)
        np.testing.assert_allclose(fast, naive, atol=1e-6)
        np.testing.assert_allclose(fast.sum((3, 4)), 1.0, atol=1e-5)   # each row is over the K-step band
        assert fast[0, :, :, 1:].sum() == 0                            # the first step sees nothing before it
    assert receptive_field(make_dt(K=3, n_layer=2)) == 6 and receptive_field(make_dt(K=3, n_layer=2, banded=False)) == 3


def test_window_view_matches_the_episode_pass_as_the_agent_acts():
    m, ds = make_dt(K=3, n_layer=2), episodes_dataset()
    data = training_data(m, ds)
    ep = episode_attention(m, ds, episode=2, data=data)
    assert ep.weights.shape == (14, 2, 1, 3, 3)
    for step in (0, 4, 13):
        w = window_attention(m, ds, episode=2, step=step, data=data)
        np.testing.assert_allclose(by_steps_back(w), ep.weights[step].sum(-1), atol=1e-6)
    np.testing.assert_allclose(ep.type_shares().sum(1), 1.0, atol=1e-5)


def test_attention_rollout_known_answers():
    T = 4
    eye = np.broadcast_to(np.eye(T), (3, 2, T, T))
    np.testing.assert_allclose(attention_rollout(eye), np.eye(T))
    lower = np.tril(np.ones((T, T)))
    uniform = lower / lower.sum(1, keepdims=True)
    a = 0.5 * np.eye(T) + 0.5 * uniform
    got = attention_rollout(np.stack([uniform[None], uniform[None]]))
    np.testing.assert_allclose(got, a @ a)
    np.testing.assert_allclose(got.sum(1), 1.0)


def test_tt_uniform_attention_has_no_striation_and_rows_sum_to_one():
    rng = np.random.default_rng(0)
    n = 40
    ds = Dataset(rng.normal(size=(n, 2)).astype(np.float32), rng.uniform(-1, 1, (n, 1)).astype(np.float32),
                 rng.normal(size=n).astype(np.float32), np.zeros(n, bool), np.eye(1, n, n - 1, dtype=bool)[0] | np.eye(1, n, 19, dtype=bool)[0],
                 np.array([0, 20]), source="tt-hand-made")
    torch.manual_seed(0)
    cfg = AgentConfig(kind="tt", obs_dim=2, act_dim=1, discrete=False, context_length=4,
                      hparams={"n_bins": 8, "hidden": 16, "n_layer": 2, "n_head": 2})
    m = TrajectoryTransformer.for_dataset(cfg, ds).eval()
    with torch.no_grad():
        for block in m.blocks:
            block.attn.c_attn.weight[:32].zero_()   # queries and keys: every score 0, uniform attention
            block.attn.c_attn.bias[:32].zero_()
    r = tt_attention(m, ds, n_windows=8)
    D = 5
    assert r.weights.shape == (2, 2, 4 * D - 1, 4 * D - 1) and r.dim_names == ["obs_0", "obs_1", "action", "reward", "value"]
    np.testing.assert_allclose(r.weights.sum(-1), 1.0, atol=1e-5)
    np.testing.assert_allclose(r.striation(), 1.0, atol=1e-5)
    np.testing.assert_allclose(r.by_dimension().sum(-1), 1.0, atol=1e-5)
    q = np.arange(D, 4 * D - 1)
    np.testing.assert_allclose(r.recent_share(), np.mean(np.minimum(q + 1, D) / (q + 1)), atol=1e-5)


def test_too_short_episodes_for_tt_windows_get_a_sentence():
    ds = episodes_dataset(lengths=(2, 3))
    ds2 = Dataset(ds.observations, ds.actions.astype(np.float32)[:, None], ds.rewards, ds.terminated, ds.truncated,
                  ds.episode_starts, source="short")
    torch.manual_seed(0)
    cfg = AgentConfig(kind="tt", obs_dim=3, act_dim=1, discrete=False, context_length=4,
                      hparams={"n_bins": 4, "hidden": 16, "n_layer": 1, "n_head": 1})
    m = TrajectoryTransformer.for_dataset(cfg, ds2)
    with pytest.raises(ValueError, match="no episode of at least 4 steps"):
        tt_attention(m, ds2)
