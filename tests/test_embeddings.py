"""Embeddings: PCA separates known clusters, the caches return without recomputing, hidden states are
the documented tensors of each agent kind."""
from pathlib import Path

import numpy as np
import pytest
import torch

from analysis.publish import catalog
from analysis.interp import embeddings as E
from analysis.core.inputs import step_windows, training_data
from models import load_agent
from trajectories import Dataset, load_dataset

ROOT = Path(__file__).resolve().parent.parent
AGENTS, DATA = ROOT / "sample_data" / "agents", ROOT / "sample_data" / "datasets"


def two_clusters(n=200, dim=16, seed=0):
    rng = np.random.default_rng(seed)
    centre = np.zeros(dim)
    centre[3] = 8.0
    labels = np.arange(n) % 2
    return (rng.normal(size=(n, dim)) + labels[:, None] * centre).astype(np.float32), labels


def test_pca_separates_two_known_clusters():
    h, labels = two_clusters()
    coords, ev = E.pca_2d(h)
    pc1 = coords[:, 0]
    # the clusters differ along one axis by 8 sd: PC1 splits them perfectly, and carries most variance
    assert (pc1[labels == 0].max() < pc1[labels == 1].min()) or (pc1[labels == 1].max() < pc1[labels == 0].min())
    assert ev[0] > 0.5 and ev[0] > ev[1]


@pytest.fixture
def fake_data():
    n = 200
    rng = np.random.default_rng(1)
    return Dataset(rng.normal(size=(n, 4)).astype(np.float32), rng.integers(0, 2, n), np.ones(n, np.float32),
                   np.eye(1, n, n - 1, dtype=bool)[0], np.zeros(n, bool), np.array([0, 50, 120]), source="fake")


def test_cache_hit_returns_same_object_without_recomputing(monkeypatch, tmp_path, fake_data):
    agent = load_agent(AGENTS / "cartpole-mlp")
    calls = []
    h, _ = two_clusters(n=fake_data.n_transitions)

    def counting(agent, dataset, steps, progress=None):
        calls.append(len(steps))
        return h[steps]

    monkeypatch.setattr(E, "hidden_states", counting)
    E.clear_caches()
    seen = []
    a = E.embed(agent, fake_data, "pca", max_points=150, seed=3, cache_dir=tmp_path, progress=lambda f, m: seen.append(f))
    assert calls == [150] and seen[-1] == 1.0 and a.coords.shape == (150, 2)
    b = E.embed(agent, fake_data, "pca", max_points=150, seed=3, cache_dir=tmp_path)
    assert b is not a and calls == [150] and np.array_equal(b.coords, a.coords)   # in-process hit: a copy
    E.clear_caches()
    c = E.embed(agent, fake_data, "pca", max_points=150, seed=3, cache_dir=tmp_path)
    assert calls == [150] and c is not a                      # disk hit: no recompute, equal values
    assert np.array_equal(c.coords, a.coords) and np.array_equal(c.steps, a.steps) and c.key == a.key
    assert c.explained_variance == a.explained_variance and c.params == a.params
    E.embed(agent, fake_data, "pca", max_points=150, seed=4, cache_dir=tmp_path)
    assert calls == [150, 150]                                # other parameters: computed
    E.embed(agent, fake_data, "pca", max_points=150, seed=3, cache_dir=tmp_path, cache=False)
    assert calls == [150, 150, 150]
    # every step in order, and its facts
    full = E.embed(agent, fake_data, "pca", max_points=None, cache_dir=tmp_path)
    assert np.array_equal(full.steps, np.arange(200))
    assert list(full.episode[[0, 49, 50, 199]]) == [0, 0, 1, 2] and list(full.timestep[[0, 50, 121]]) == [0, 0, 1]
    assert np.array_equal(full.action, fake_data.actions)
    assert list(full.to_frame().columns) == ["x", "y", "step", "episode", "timestep", "rtg", "action", "episode_return"]
    E.clear_caches()


def test_dt_hidden_is_last_layer_state_token():
    dt = load_agent(AGENTS / "cartpole-dt")
    ds = load_dataset(DATA / "cartpole.npz")
    steps = np.array([0, 7, 300, 5000])                       # left-padded windows (0, 7) and full ones
    h = E.hidden_states(dt, ds, steps)
    assert h.shape == (4, 64)
    data = training_data(dt, ds)
    with torch.no_grad():
        dt.eval()
        out = dt(**step_windows(dt, data, steps), output_hidden_states=True)
    K = dt.context_length
    assert np.allclose(h, out.hidden_states[-1][:, 3 * (K - 1) + 1].numpy(), atol=1e-5)


@pytest.mark.parametrize("name,data", [("pendulum-tt", "pendulum"), ("masked-cartpole-gru", "masked-cartpole"),
                                       ("pendulum-dynamics", "pendulum"), ("cartpole-mlp", "cartpole")])
def test_hidden_states_smoke(name, data):
    agent = load_agent(AGENTS / name)
    ds = load_dataset(DATA / f"{data}.npz")
    res = E.embed(agent, ds, "pca", max_points=120, seed=0, cache=False)
    assert res.coords.shape == (120, 2) and np.isfinite(res.coords).all()
    assert res.agent_kind == agent.kind and res.hidden_dim > 1


def test_gru_hidden_is_the_gru_cell_run_by_hand():
    """The recurrent state after each step, from the GRU equations on the agent's own weights (one step at
    a time, h_0 = 0), not from the module's forward."""
    gru = load_agent(AGENTS / "masked-cartpole-gru")
    ds = load_dataset(DATA / "masked-cartpole.npz")
    ep = ds.episode(2)
    s0 = int(ds.episode_starts[2])
    h = E.hidden_states(gru, ds, np.array([s0, s0 + 5]))
    g = gru.gru
    assert g.num_layers == 1
    w_ih, w_hh = g.weight_ih_l0.detach().double().numpy(), g.weight_hh_l0.detach().double().numpy()
    b_ih, b_hh = g.bias_ih_l0.detach().double().numpy(), g.bias_hh_l0.detach().double().numpy()
    W, b = gru.inp.weight.detach().double().numpy(), gru.inp.bias.detach().double().numpy()
    mean, std = np.asarray(gru.config.state_mean), np.maximum(np.asarray(gru.config.state_std), 1e-6)
    sig = lambda z: 1 / (1 + np.exp(-z))   # noqa: E731
    H = g.hidden_size
    state, states = np.zeros(H), []
    for t in range(6):
        prev = np.zeros(gru.config.n_actions)
        if t:
            prev[int(ep.actions[t - 1])] = 1.0                    # one-hot previous action (zeros at t = 0)
        x = np.maximum(W @ np.concatenate([(ep.observations[t] - mean) / std, prev]) + b, 0)
        gi, gh = w_ih @ x + b_ih, w_hh @ state + b_hh
        r, z = sig(gi[:H] + gh[:H]), sig(gi[H:2 * H] + gh[H:2 * H])
        n = np.tanh(gi[2 * H:] + r * gh[2 * H:])
        state = (1 - z) * n + z * state
        states.append(state)
    np.testing.assert_allclose(h, np.stack(states)[[0, 5]], atol=1e-5)
    assert np.abs(h[1]).max() > 0.05                              # a non-trivial state


@pytest.mark.parametrize("name,data", [("cartpole-mlp", "cartpole"), ("pendulum-dynamics", "pendulum")])
def test_feedforward_hidden_is_the_last_hidden_layer_by_hand(name, data):
    """MLP policy: relu layers on the normalised observation; dynamics model: on [obs, action in [-1, 1]]."""
    agent = load_agent(AGENTS / name)
    ds = load_dataset(DATA / f"{data}.npz")
    steps = np.array([3, 40])
    h = E.hidden_states(agent, ds, steps)
    mean, std = np.asarray(agent.config.state_mean), np.maximum(np.asarray(agent.config.state_std), 1e-6)
    x = (ds.observations[steps].astype(np.float64) - mean) / std
    if agent.kind == "dynamics":
        lo, hi = np.asarray(agent.config.action_low), np.asarray(agent.config.action_high)
        a = ds.actions[steps].reshape(len(steps), -1).astype(np.float64)
        x = np.concatenate([x, np.clip(2 * (a - lo) / (hi - lo) - 1, -1, 1)], 1)
    linears = [m for m in agent.net if isinstance(m, torch.nn.Linear)]
    for lin in linears[:-1]:
        x = np.maximum(x @ lin.weight.detach().double().numpy().T + lin.bias.detach().double().numpy(), 0)
    assert h.shape == (2, linears[-1].in_features)
    np.testing.assert_allclose(h, x, atol=1e-4, rtol=1e-5)


def test_tt_hidden_is_the_final_layer_norm_at_the_last_observation_token():
    """From the raw history through the model's own context builder, not the analysis's token slicing."""
    tt = load_agent(AGENTS / "pendulum-tt")
    ds = load_dataset(DATA / "pendulum.npz")
    s0 = int(ds.episode_starts[1])
    steps = np.array([s0, s0 + 2, s0 + 30])
    h = E.hidden_states(tt, ds, steps)
    K = tt.context_length
    for row, s in zip(h, steps):
        t = s - s0
        ctx = tt.context_tokens(ds.observations[s0:s + 1], ds.actions[s0:s], ds.rewards[s0:s], K - 1)
        assert len(ctx) == min(t, K - 1) * tt.D + tt.obs_dim
        with torch.no_grad():
            _, cache = tt.eval().run_with_cache(torch.as_tensor(ctx)[None], ["ln_final.out"])
        np.testing.assert_allclose(row, cache["ln_final.out"][0, -1].numpy(), atol=1e-5)


def test_umap_small_separates_clusters_and_catalog_figure(monkeypatch, tmp_path):
    monkeypatch.setenv("SEQLENS_CACHE", str(tmp_path))
    h, labels = two_clusters(n=120)
    coords = E.umap_2d(h, seed=0, n_neighbors=10)
    assert coords.shape == (120, 2) and np.isfinite(coords).all()
    # every point's nearest 2-D neighbour is from its own cluster
    d = ((coords[:, None] - coords[None]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    assert (labels[d.argmin(1)] == labels).mean() > 0.95
    f = catalog.make("embedding", load_agent(AGENTS / "cartpole-mlp"), load_dataset(DATA / "cartpole.npz"),
                     colour_by="action", max_points=300)
    assert len(f.data) == 300 and len(f.figure.data) == 2     # one trace per discrete action
