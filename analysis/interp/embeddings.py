"""Embeddings: an agent's hidden states over a dataset, projected to 2-D (PCA, instant; or UMAP).

Which hidden state stands for a step (named activations, models/activations.py):
- Decision Transformer: the last block's output `blocks.{n_layer-1}.resid_post` at the step's state
  token s_t (the token the action is read from), from the window of the agent's K steps ending at t
  (run_with_cache(..., last_state_only=True), which skips the work that token does not read).
- Trajectory Transformer: the final (ln_f) hidden at the transition's last observation token, from
  up to K - 1 logged transitions before it (the state the model predicts the action from;
  `TrajectoryTransformer.final_hidden` = `ln_final.out`).
- MLP / dynamics model: the last hidden layer (`hidden.{n_layer-1}`); GRU: the recurrent state after the
  step (`gru.hidden`).

Colour by return-to-go, timestep, action or episode return. Results are in the one cache (analysis/core/cache.py):
in memory, and on disk (`cache.on_disk` under `$SEQLENS_CACHE/embeddings`, default ~/.cache/seqlens/embeddings) so a
UMAP survives a restart, keyed by a hash of the agent's weights, the dataset's fingerprint and the parameters; the
disk directory is pruned to `limits().embedding_cache_bytes` (least recently used first). Numba (UMAP) compiles into
`$SEQLENS_CACHE/numba` unless NUMBA_CACHE_DIR is already set, so only the first UMAP pays the JIT.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch

from models.errors import AgentError
from models.base import inference
from models.checks import check_dataset

from analysis.core.cache import CACHE, cache_root, cached, on_disk, tee
from analysis.core.identity import agent_key, dataset_key


# before numba is imported (umap-learn imports it lazily, on first UMAP)
os.environ.setdefault("NUMBA_CACHE_DIR", str(cache_root() / "numba"))

METHODS = ("pca", "umap")
COLOUR_BY = ("rtg", "timestep", "action", "episode_return")
MAX_POINTS = 20_000
MIN_POINTS = 3   # PCA to 2-D needs more points than components
Progress = Callable[[float, str], None]


@dataclass
class Embedding:
    """2-D projection of one hidden state per (sampled) dataset step, with what to colour it by."""

    coords: np.ndarray            # [n, 2]
    steps: np.ndarray             # [n] absolute dataset step
    episode: np.ndarray           # [n]
    timestep: np.ndarray          # [n] step within the episode
    rtg: np.ndarray               # [n] return-to-go (raw units)
    action: np.ndarray            # [n] int (discrete) or the first action dimension (continuous)
    episode_return: np.ndarray    # [n]
    method: str
    agent_kind: str
    hidden_dim: int
    discrete: bool
    explained_variance: list[float] = field(default_factory=list)   # PCA: share of variance per axis
    params: dict = field(default_factory=dict)
    key: str = ""

    def colour(self, by: str) -> np.ndarray:
        if by not in COLOUR_BY:
            raise ValueError(f"colour_by must be one of {', '.join(COLOUR_BY)}, got '{by}'.")
        return getattr(self, by)

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame({"x": self.coords[:, 0], "y": self.coords[:, 1], "step": self.steps,
                             "episode": self.episode, "timestep": self.timestep, "rtg": self.rtg,
                             "action": self.action, "episode_return": self.episode_return})

    # disk cache
    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = {k: getattr(self, k) for k in ("method", "agent_kind", "hidden_dim", "discrete", "explained_variance",
                                              "params", "key")}
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, coords=self.coords, steps=self.steps, episode=self.episode, timestep=self.timestep,
                 rtg=self.rtg, action=self.action, episode_return=self.episode_return, meta=np.array(json.dumps(meta)))
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> "Embedding":
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            return cls(z["coords"], z["steps"], z["episode"], z["timestep"], z["rtg"], z["action"],
                       z["episode_return"], **meta)


# ---------------------------------------------------------------------------------------------------
# hidden states
# ---------------------------------------------------------------------------------------------------
def _report(progress: Progress | None, frac: float, msg: str) -> None:
    """To the caller's progress and to whoever asked through analysis.core.cache.context (a page's bar)."""
    tee(progress)(frac, msg)


def hidden_states(agent, dataset, steps: np.ndarray, progress: Progress | None = None,
                  batch_size: int = 1024) -> np.ndarray:
    """One hidden vector per absolute dataset step [n, hidden] (float32); see the module docstring."""
    check_dataset(agent, dataset)
    steps = np.asarray(steps, np.int64)
    kind = agent.kind
    with inference(agent):
        if agent.has("step_tokens"):   # the families define a step's hidden state differently (module docstring)
            return _dt_hidden(agent, dataset, steps, progress, batch_size)
        if agent.has("tokens"):
            return _tt_hidden(agent, dataset, steps, progress, batch_size // 4)
        if agent.has("recurrent"):
            return _gru_hidden(agent, dataset, steps, progress)
        layers = [n for n in agent.activation_names() if n.startswith("hidden.")]
        if layers:            # feed-forward: the MLP policy on s_t, the dynamics model on (s_t, a_t)
            obs = agent.normalize(torch.from_numpy(dataset.observations[steps]))
            inputs = (obs, torch.as_tensor(dataset.actions[steps])) if agent.has("dynamics") else obs
            out = agent.run_with_cache(inputs, names=[layers[-1]])[1][layers[-1]].numpy()
            _report(progress, 1.0, "hidden states")
            return out
        raise AgentError(f"no hidden states defined for a {kind} agent.")


def _dt_hidden(agent, dataset, steps, progress, batch_size):
    from analysis.core.inputs import step_windows, training_data, window_rows

    data = training_data(agent, dataset)
    name = [n for n in agent.activation_names() if n.endswith(".resid_post")][-1]   # the last block's output
    batch_size = window_rows(agent, data, batch_size)   # frame stacks: 1,024 windows would be 3.4 GB at once
    out = []
    for i in range(0, len(steps), batch_size):
        inputs = step_windows(agent, data, steps[i:i + batch_size], embed=True)
        # only the last step's s_t token is read: the model skips the rest of the last block's work
        _, cache = agent.run_with_cache(inputs, names=[name], last_state_only=True)
        out.append(cache[name][:, 0].numpy())
        _report(progress, (i + batch_size) / len(steps), "hidden states (Decision Transformer)")
    return np.concatenate(out) if out else np.zeros((0, int(agent.cfg.hidden)), np.float32)


def _tt_hidden(agent, dataset, steps, progress, batch_size):
    tokens = agent.encode_transitions(dataset.observations, dataset.actions, dataset.rewards)
    o, D = agent.obs_dim, agent.D
    p_all = np.minimum(dataset.timesteps[steps], agent.context_length - 1)
    out = None
    done = 0
    for p in np.unique(p_all):                    # same-length contexts batch together
        rows = np.flatnonzero(p_all == p)
        for i in range(0, len(rows), batch_size):
            r = rows[i:i + batch_size]
            s = steps[r]
            past = tokens[s[:, None] - np.arange(p, 0, -1)[None, :]].reshape(len(s), p * D)
            ctx = torch.from_numpy(np.concatenate([past, tokens[s, :o]], axis=1))
            h = agent.final_hidden(ctx)[:, -1].numpy()
            if out is None:
                out = np.zeros((len(steps), h.shape[1]), np.float32)
            out[r] = h
            done += len(r)
            _report(progress, done / len(steps), "hidden states (Trajectory Transformer)")
    return out if out is not None else np.zeros((0, int(agent.cfg.hidden)), np.float32)


def _gru_hidden(agent, dataset, steps, progress):
    from analysis.core.inputs import training_data

    data = training_data(agent, dataset)
    ep_of = np.searchsorted(data.starts, steps, side="right") - 1
    episodes = np.unique(ep_of)
    out = None
    for i in range(0, len(episodes), 64):
        eps = episodes[i:i + 64]
        T = int((data.ends[eps] - data.starts[eps]).max())
        idx = data.starts[eps][:, None] + np.arange(T)[None, :]
        idx = np.minimum(idx, data.ends[eps][:, None] - 1)     # past the end: repeats (never read)
        obs = torch.from_numpy(data.obs[idx])
        acts = torch.as_tensor(data.actions[idx])
        x = agent.run_with_cache((obs, agent.prev_actions(acts)), names=["gru.hidden"])[1]["gru.hidden"]
        if out is None:
            out = np.zeros((len(steps), x.shape[-1]), np.float32)
        for j, e in enumerate(eps):
            rows = np.flatnonzero(ep_of == e)
            out[rows] = x[j, steps[rows] - data.starts[e]].numpy()
        _report(progress, (i + 64) / len(episodes), "hidden states (GRU)")
    return out if out is not None else np.zeros((0, int(agent.cfg.hidden)), np.float32)


# ---------------------------------------------------------------------------------------------------
# projections
# ---------------------------------------------------------------------------------------------------
def pca_2d(hidden: np.ndarray) -> tuple[np.ndarray, list[float]]:
    """PCA to 2-D (scikit-learn): coordinates [n, 2] and the share of variance on each axis."""
    from sklearn.decomposition import PCA

    pca = PCA(n_components=2, svd_solver="full", random_state=0)
    coords = pca.fit_transform(np.asarray(hidden, np.float64))
    return coords.astype(np.float32), [float(v) for v in pca.explained_variance_ratio_]


UMAP_SETTINGS = dict(n_neighbors=15, min_dist=0.1, init="pca", n_jobs=1)
_NUMBA_CACHING = False


def enable_numba_caching() -> int:
    """Most of umap-learn's numba functions are compiled without cache=True, so every new process pays
    ~10-20 s of JIT. Turn on numba's file cache (NUMBA_CACHE_DIR) for those compiled at module level;
    returns how many were switched. Call before their first use."""
    global _NUMBA_CACHING
    import numba
    from numba.core.registry import CPUDispatcher

    if not numba.config.CACHE_DIR:   # numba imported before us: still compile into our cache
        numba.config.CACHE_DIR = os.environ["NUMBA_CACHE_DIR"]
    if _NUMBA_CACHING:
        return 0
    import umap.layouts
    import umap.spectral
    import umap.umap_
    import umap.utils

    n = 0
    for mod in (umap.umap_, umap.layouts, umap.utils, umap.spectral):
        for fn in list(vars(mod).values()):
            if isinstance(fn, CPUDispatcher) and type(fn._cache).__name__ == "NullCache" and not fn.signatures:
                try:
                    fn.enable_caching()
                    n += 1
                except Exception:  # noqa: BLE001 - a function numba cannot cache compiles as before
                    pass
    _NUMBA_CACHING = True
    return n


def exact_knn(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact k nearest neighbours (each point first, itself) by brute force in BLAS (scikit-learn)."""
    from sklearn.neighbors import NearestNeighbors

    k = min(int(k), len(x))
    dist, idx = NearestNeighbors(n_neighbors=k, algorithm="brute").fit(x).kneighbors(x)
    return idx.astype(np.int64), dist.astype(np.float32)


def umap_2d(hidden: np.ndarray, seed: int = 0, n_neighbors: int = 15, min_dist: float = 0.1) -> np.ndarray:
    """UMAP to 2-D (umap-learn), seeded (single-threaded, deterministic). Our settings against umap's
    defaults (bench/umap_speed.py): exact neighbours from one BLAS pass (scikit-learn, a few seconds for
    20k points) instead of NN-descent's JIT-heavy search; PCA init (a spectral init of a 20k-point graph
    is slow and adds little at 2-D); numba's file cache for umap's functions (enable_numba_caching)."""
    import warnings

    enable_numba_caching()
    import umap

    x = np.asarray(hidden, np.float32)
    if len(x) < 4:
        raise ValueError(f"UMAP needs at least 4 points, got {len(x)}.")
    k = max(2, min(int(n_neighbors), len(x) - 1))
    idx, dist = exact_knn(x, k)
    kw = {**UMAP_SETTINGS, "n_neighbors": k, "min_dist": float(min_dist)}
    if len(x) <= 2 * k + 2:   # PCA/spectral init need a few more points than neighbours
        kw["init"] = "random"
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*knn_search_index.*")
        warnings.filterwarnings("ignore", message=".*n_jobs value.*")
        model = umap.UMAP(n_components=2, random_state=seed, precomputed_knn=(idx, dist, None), **kw)
        return model.fit_transform(x).astype(np.float32)


# ---------------------------------------------------------------------------------------------------
# sampling, keys, caches
# ---------------------------------------------------------------------------------------------------
def sample_steps(dataset, max_points: int | None = MAX_POINTS, seed: int = 0) -> np.ndarray:
    """All steps, or `max_points` of them drawn without replacement (seeded), sorted."""
    n = dataset.n_transitions
    if not max_points or n <= max_points:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=int(max_points), replace=False))


def _fingerprints(agent, dataset) -> tuple[str, str]:
    """Content keys (analysis/core/identity.py): stamped once at load, else hashed on every call (a few ms),
    so weights changed in place or copies (deepcopy, Dataset.select) never hit a stale entry."""
    return agent_key(agent), dataset_key(dataset)


def clear_caches() -> None:
    """Forget what is cached in this process (the disk cache stays)."""
    CACHE.clear()


def embed(agent, dataset, method: str = "pca", max_points: int | None = MAX_POINTS, seed: int = 0,
          n_neighbors: int = 15, min_dist: float = 0.1, progress: Progress | None = None,
          cache: bool = True, cache_dir: str | Path | None = None) -> Embedding:
    """Hidden states of (up to `max_points` sampled) dataset steps, projected to 2-D with `method`.

    progress(fraction, message) is called as work advances. cache=False recomputes (and stores nothing).
    A cached result is a copy from the one cache (analysis/core/cache.py) or read from disk."""
    method = method.lower()
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got '{method}'.")
    check_dataset(agent, dataset)
    need = MIN_POINTS if method == "pca" else max(MIN_POINTS, int(n_neighbors) + 1)
    if dataset.n_transitions < need:
        raise ValueError(f"{dataset.source} has {dataset.n_transitions} step{'s' if dataset.n_transitions != 1 else ''}; "
                         f"a {method.upper()} embedding needs at least {need}.")
    a_fp, d_fp = _fingerprints(agent, dataset)
    params = {"method": method, "max_points": int(max_points or 0), "seed": int(seed)}
    if method == "umap":
        params.update(n_neighbors=int(n_neighbors), min_dist=float(min_dist))
    key = hashlib.sha256(json.dumps([a_fp, d_fp, params], sort_keys=True).encode()).hexdigest()[:20]
    disk = Path(cache_dir) if cache_dir is not None else cache_root() / "embeddings"

    def from_disk_or_compute() -> Embedding:
        return on_disk(disk, key, lambda: _project(agent, dataset, method, max_points, seed, n_neighbors, min_dist,
                                                   params, key, progress, cache),
                       lambda res, path: res.save(path), Embedding.load, use=cache, progress=progress)

    res = cached("embedding", from_disk_or_compute, agent, dataset, use_cache=cache, **params)
    if cache:
        _report(progress, 1.0, "done")
    return res


def _project(agent, dataset, method, max_points, seed, n_neighbors, min_dist, params, key, progress, cache) -> Embedding:
    steps = sample_steps(dataset, max_points, seed)
    hidden = cached("hidden_states", lambda: hidden_states(
        agent, dataset, steps, None if progress is None else (lambda f, m: progress(0.6 * f if method == "umap" else 0.9 * f, m))),
        agent, dataset, use_cache=cache, max_points=int(max_points or 0), seed=int(seed))
    _report(progress, 0.6 if method == "umap" else 0.9, f"projecting {len(steps)} points ({method.upper()})")
    if method == "pca":
        coords, ev = pca_2d(hidden)
    else:
        coords, ev = umap_2d(hidden, seed, n_neighbors, min_dist), []
    ep = dataset.episode_index[steps]
    acts = dataset.actions[steps]
    return Embedding(coords, steps, ep, dataset.timesteps[steps], dataset.returns_to_go[steps].astype(np.float32),
                     acts if dataset.discrete else acts.reshape(len(steps), -1)[:, 0],
                     dataset.episode_returns[ep].astype(np.float32), method, agent.kind, int(hidden.shape[1]),
                     bool(dataset.discrete), ev, params, key)
