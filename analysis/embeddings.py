"""Embeddings: an agent's hidden states over a dataset, projected to 2-D (PCA, instant; or UMAP).

Which hidden state stands for a step:
- Decision Transformer: the last block's output at the step's state token s_t (the token the action is
  read from), from the window of the agent's K steps ending at t (forward(output_hidden_states=True)).
- Trajectory Transformer: the final (ln_f) hidden at the transition's last observation token, from
  up to K - 1 logged transitions before it (the state the model predicts the action from).
- MLP / dynamics model: the penultimate layer; GRU: the recurrent state after the step.

Colour by return-to-go, timestep, action or episode return. Results are cached in process (LRU) and on
disk (`$SEQLENS_CACHE/embeddings`, default ~/.cache/seqlens/embeddings), keyed by a hash of the agent's
weights, the dataset's fingerprint and the parameters; the disk cache is pruned to
`limits().embedding_cache_bytes` (least recently used first). Numba (UMAP) compiles into
`$SEQLENS_CACHE/numba` unless NUMBA_CACHE_DIR is already set, so only the first UMAP pays the JIT.
"""
from __future__ import annotations

import hashlib
import json
import os
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch

from models.errors import AgentError
from models.evaluate import check_dataset
from trajectories.limits import limits

from .catalog import Figured, register
from .identity import agent_key, dataset_key


def cache_root() -> Path:
    return Path(os.environ.get("SEQLENS_CACHE") or Path.home() / ".cache" / "seqlens")


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
    if progress is not None:
        progress(float(min(max(frac, 0.0), 1.0)), msg)


@torch.no_grad()
def hidden_states(agent, dataset, steps: np.ndarray, progress: Progress | None = None,
                  batch_size: int = 1024) -> np.ndarray:
    """One hidden vector per absolute dataset step [n, hidden] (float32); see the module docstring."""
    check_dataset(agent, dataset)
    steps = np.asarray(steps, np.int64)
    kind = agent.kind
    was = agent.training
    agent.eval()
    try:
        if kind == "dt":
            return _dt_hidden(agent, dataset, steps, progress, batch_size)
        if kind == "tt":
            return _tt_hidden(agent, dataset, steps, progress, batch_size // 4)
        if kind == "gru":
            return _gru_hidden(agent, dataset, steps, progress)
        if kind in ("mlp", "dynamics"):
            obs = agent.normalize(torch.from_numpy(dataset.observations[steps]))
            x = obs if kind == "mlp" else torch.cat([obs, agent._action_input(torch.as_tensor(dataset.actions[steps]))], -1)
            out = agent.net[:-1](x).numpy()
            _report(progress, 1.0, "hidden states")
            return out
        raise AgentError(f"no hidden states defined for a {kind} agent.")
    finally:
        agent.train(was)


def _dt_hidden(agent, dataset, steps, progress, batch_size):
    from .inputs import step_windows, training_data

    data = training_data(agent, dataset)
    out = []
    for i in range(0, len(steps), batch_size):
        out.append(_dt_last_state_hidden(agent, step_windows(agent, data, steps[i:i + batch_size])).numpy())
        _report(progress, (i + batch_size) / len(steps), "hidden states (Decision Transformer)")
    return np.concatenate(out) if out else np.zeros((0, agent.hp["hidden"]), np.float32)


def _dt_last_state_hidden(agent, inputs: dict) -> torch.Tensor:
    """forward(**inputs, output_hidden_states=True).hidden_states[-1][:, s_t of the last step], computed
    without the work nothing reads: the last step's action token (the state token never sees it) and
    the last block's attention and MLP for every other token (a third of the cost).
    tests/test_embeddings.py checks it equals the full forward."""
    from models.decision_transformer import _allowed

    states, actions, rtg = inputs["states"], inputs["actions"], inputs["returns_to_go"]
    B, L = states.shape[:2]
    t = agent.embed_timestep(agent._timesteps(inputs["timesteps"].long()))
    tokens = torch.stack([agent._embed_return(rtg, True) + t, agent.embed_state(states) + t,
                          agent.embed_action(actions) + t], dim=2).reshape(B, 3 * L, -1)[:, :-1]
    x = agent._finish_tokens(tokens)
    T = x.shape[1]
    pos = torch.arange(T)
    valid = inputs["attention_mask"].bool().repeat_interleave(3, dim=1)[:, :T]
    blocks = agent.encoder["h"]
    allowed = _allowed(pos, pos, agent.band, valid)
    for block in blocks[:-1]:
        x, _, _ = block(x, allowed)
    last = blocks[-1]
    C, H = x.shape[-1], last.attn.n_head
    _, k, v = last.attn.c_attn(last.ln_1(x[:, :-1])).split(C, dim=2)
    past = tuple(z.view(B, T - 1, H, C // H).transpose(1, 2) for z in (k, v))
    y, _, _ = last(x[:, -1:], _allowed(pos[-1:], pos, agent.band, valid), past)
    return y[:, 0]


def _tt_hidden(agent, dataset, steps, progress, batch_size):
    tokens = agent.encode_transitions(dataset.observations, dataset.actions, dataset.rewards)
    o, D = agent.obs_dim, agent.D
    p_all = np.minimum(dataset.timesteps[steps], agent.context_length - 1)
    out = np.zeros((len(steps), agent.ln_f.normalized_shape[0]), np.float32)
    done = 0
    for p in np.unique(p_all):                    # same-length contexts batch together
        rows = np.flatnonzero(p_all == p)
        for i in range(0, len(rows), batch_size):
            r = rows[i:i + batch_size]
            s = steps[r]
            past = tokens[s[:, None] - np.arange(p, 0, -1)[None, :]].reshape(len(s), p * D)
            ctx = torch.from_numpy(np.concatenate([past, tokens[s, :o]], axis=1))
            out[r] = agent.final_hidden(ctx)[:, -1].numpy()
            done += len(r)
            _report(progress, done / len(steps), "hidden states (Trajectory Transformer)")
    return out


def _gru_hidden(agent, dataset, steps, progress):
    import torch.nn.functional as F

    from .inputs import training_data

    data = training_data(agent, dataset)
    ep_of = np.searchsorted(data.starts, steps, side="right") - 1
    episodes = np.unique(ep_of)
    out = np.zeros((len(steps), agent.gru.hidden_size), np.float32)
    for i in range(0, len(episodes), 64):
        eps = episodes[i:i + 64]
        T = int((data.ends[eps] - data.starts[eps]).max())
        idx = data.starts[eps][:, None] + np.arange(T)[None, :]
        idx = np.minimum(idx, data.ends[eps][:, None] - 1)     # past the end: repeats (never read)
        obs = torch.from_numpy(data.obs[idx])
        acts = torch.as_tensor(data.actions[idx])
        x, _ = agent.gru(F.relu(agent.inp(torch.cat([obs, agent._prev_actions(acts)], -1))))
        for j, e in enumerate(eps):
            rows = np.flatnonzero(ep_of == e)
            out[rows] = x[j, steps[rows] - data.starts[e]].numpy()
        _report(progress, (i + 64) / len(episodes), "hidden states (GRU)")
    return out


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
    """Content keys (analysis/identity.py): stamped once at load, else hashed on every call (a few ms),
    so weights changed in place or copies (deepcopy, Dataset.select) never hit a stale entry."""
    return agent_key(agent), dataset_key(dataset)


def prune_disk_cache(directory: Path, max_bytes: int | None = None) -> int:
    """Keep the on-disk cache under max_bytes (limits().embedding_cache_bytes): the least recently used
    files go first (a hit touches its file). Returns the bytes removed."""
    max_bytes = limits().embedding_cache_bytes if max_bytes is None else max_bytes
    try:
        files = [(f.stat().st_mtime, f.stat().st_size, f) for f in Path(directory).glob("*.npz")]
    except OSError:
        return 0
    total, removed = sum(size for _, size, _ in files), 0
    for _, size, f in sorted(files, key=lambda x: x[0]):
        if total <= max_bytes:
            break
        f.unlink(missing_ok=True)
        total -= size
        removed += size
    return removed


class LRU:
    """A small in-process least-recently-used cache."""

    def __init__(self, maxsize: int = 8):
        self.maxsize, self.data = maxsize, OrderedDict()

    def get(self, key):
        if key in self.data:
            self.data.move_to_end(key)
            return self.data[key]
        return None

    def put(self, key, value) -> None:
        self.data[key] = value
        self.data.move_to_end(key)
        while len(self.data) > self.maxsize:
            self.data.popitem(last=False)

    def clear(self) -> None:
        self.data.clear()


_HIDDEN = LRU(4)       # hidden states: switching PCA <-> UMAP does not recompute them
_RESULTS = LRU(16)     # projections


def clear_caches() -> None:
    _HIDDEN.clear()
    _RESULTS.clear()


def embed(agent, dataset, method: str = "pca", max_points: int | None = MAX_POINTS, seed: int = 0,
          n_neighbors: int = 15, min_dist: float = 0.1, progress: Progress | None = None,
          cache: bool = True, cache_dir: str | Path | None = None) -> Embedding:
    """Hidden states of (up to `max_points` sampled) dataset steps, projected to 2-D with `method`.

    progress(fraction, message) is called as work advances. cache=False recomputes (and stores nothing).
    A cached result is returned as the same object (in process) or read from disk."""
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
    path = disk / f"{key}.npz"
    if cache:
        hit = _RESULTS.get(key)
        if hit is not None:
            _report(progress, 1.0, "cached")
            return hit
        if path.exists():
            try:
                res = Embedding.load(path)
                os.utime(path)   # least recently used goes first when the cache is pruned
                _RESULTS.put(key, res)
                _report(progress, 1.0, "cached on disk")
                return res
            except Exception:  # noqa: BLE001 - a damaged cache file is recomputed
                path.unlink(missing_ok=True)

    steps = sample_steps(dataset, max_points, seed)
    h_key = (a_fp, d_fp, int(max_points or 0), int(seed))
    hidden = _HIDDEN.get(h_key) if cache else None
    if hidden is None:
        hidden = hidden_states(agent, dataset, steps, None if progress is None else
                               (lambda f, m: progress(0.6 * f if method == "umap" else 0.9 * f, m)))
        if cache:
            _HIDDEN.put(h_key, hidden)
    _report(progress, 0.6 if method == "umap" else 0.9, f"projecting {len(steps)} points ({method.upper()})")
    if method == "pca":
        coords, ev = pca_2d(hidden)
    else:
        coords, ev = umap_2d(hidden, seed, n_neighbors, min_dist), []
    ep = dataset.episode_index[steps]
    acts = dataset.actions[steps]
    res = Embedding(coords, steps, ep, dataset.timesteps[steps], dataset.returns_to_go[steps].astype(np.float32),
                    acts if dataset.discrete else acts.reshape(len(steps), -1)[:, 0],
                    dataset.episode_returns[ep].astype(np.float32), method, agent.kind, int(hidden.shape[1]),
                    bool(dataset.discrete), ev, params, key)
    if cache:
        _RESULTS.put(key, res)
        try:
            res.save(path)
            prune_disk_cache(disk)
        except OSError:
            pass   # a read-only home: the in-process cache still works
    _report(progress, 1.0, "done")
    return res


# ---------------------------------------------------------------------------------------------------
# catalog
# ---------------------------------------------------------------------------------------------------
@register("embedding", "hidden states of every dataset step in 2-D (PCA or UMAP), coloured by RTG, timestep, action or return")
def make_embedding(agent, dataset, method: str = "pca", colour_by: str = "rtg", max_points: int = MAX_POINTS,
                   seed: int = 0) -> Figured:
    from .figures import embedding_scatter

    res = embed(agent, dataset, method, max_points, seed)
    title = f"{agent.kind.upper()} hidden states ({method.upper()}) — {dataset.source}"
    fig = embedding_scatter(res, colour_by, title)
    return Figured("embedding", fig, res.to_frame(), {"method": method, "colour_by": colour_by,
                                                      "max_points": int(max_points), "seed": int(seed)})
