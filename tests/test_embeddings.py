"""Embeddings: PCA separates known clusters, the caches return without recomputing, hidden states are
the documented tensors of each agent kind."""
from pathlib import Path

import numpy as np
import pytest
import torch

from analysis import catalog
from analysis import embeddings as E
from analysis.inputs import step_windows, training_data
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
    assert b is a and calls == [150]                          # in-process hit: the same object
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


def test_gru_hidden_matches_a_step_by_step_rollout():
    gru = load_agent(AGENTS / "masked-cartpole-gru")
    ds = load_dataset(DATA / "masked-cartpole.npz")
    ep = ds.episode(2)
    s0 = int(ds.episode_starts[2])
    h = E.hidden_states(gru, ds, np.array([s0, s0 + 5]))
    with torch.no_grad():
        obs = gru.normalize(torch.from_numpy(ep.observations[:6]))[None]
        x, _ = gru.gru(torch.relu(gru.inp(torch.cat([obs, gru._prev_actions(torch.as_tensor(ep.actions[:6])[None])], -1))))
    assert np.allclose(h, x[0, [0, 5]].numpy(), atol=1e-5)


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
