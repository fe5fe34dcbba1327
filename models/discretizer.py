"""Per-dimension quantile discretization for the Trajectory Transformer (Janner et al. 2021).

Each dimension d of a transition [obs, act, reward, value] gets N bins cut at its own quantiles, so every
bin holds about the same share of the training data. A value becomes the token `bin + d * N`; a token
decodes to its bin's centre (the mean of the training values that fell in it). `reconstruction_error`
is the floor under every TT prediction error: a perfect model still decodes to bin centres.
"""
from __future__ import annotations

import numpy as np


class QuantileDiscretizer:
    """edges [D, N-1] interior bin edges (bin k = [edges[k-1], edges[k])), centres [D, N], counts [D, N]."""

    def __init__(self, edges: np.ndarray, centres: np.ndarray, counts: np.ndarray | None = None):
        self.edges = np.asarray(edges, np.float64)
        self.centres = np.asarray(centres, np.float64)
        if self.edges.ndim != 2 or self.centres.ndim != 2 or self.edges.shape != (self.centres.shape[0], self.centres.shape[1] - 1):
            raise ValueError(f"discretizer needs edges [D, N-1] and centres [D, N]; got {self.edges.shape} and {self.centres.shape}")
        if (np.diff(self.edges, axis=1) < 0).any():
            raise ValueError("discretizer edges must be non-decreasing along each dimension")
        self.counts = np.ones(self.centres.shape, np.int64) if counts is None else np.asarray(counts, np.int64)

    @property
    def n_bins(self) -> int:
        return self.centres.shape[1]

    @property
    def dim(self) -> int:
        return self.centres.shape[0]

    @classmethod
    def fit(cls, data: np.ndarray, n_bins: int, integer_dims=()) -> "QuantileDiscretizer":
        """data [n, D]. `integer_dims` (e.g. a discrete action) get one bin per integer 0..N-1 instead."""
        data = np.asarray(data, np.float64)
        if data.ndim != 2 or len(data) == 0:
            raise ValueError(f"discretizer data must be a non-empty [n, D] array, got shape {data.shape}")
        if n_bins < 2:
            raise ValueError(f"n_bins must be at least 2, got {n_bins}")
        if not np.isfinite(data).all():
            raise ValueError("discretizer data has NaN or inf")
        n, D = data.shape
        edges = np.empty((D, n_bins - 1))
        for d in range(D):
            if d in integer_dims:
                if data[:, d].max() > n_bins - 1 or data[:, d].min() < 0:
                    raise ValueError(f"dimension {d} holds integers outside 0..{n_bins - 1}; use more bins")
                edges[d] = np.arange(n_bins - 1) + 0.5
                continue
            col = np.sort(data[:, d])
            e = col[np.arange(1, n_bins) * n // n_bins]          # bin k holds sorted rows [k n/N, (k+1) n/N)
            # A value repeated across several quantiles (a clipped torque at exactly +-2) gets a bin of
            # its own, [v, nextafter(v)), so it decodes back to exactly v.
            last_of_run = np.append(e[1:] != e[:-1], True)
            repeated = np.append(False, e[1:] == e[:-1])
            first_of_run = ~repeated
            runs = last_of_run & ~first_of_run
            e[runs] = np.nextafter(e[runs], np.inf)
            edges[d] = e
        bins = np.stack([np.searchsorted(edges[d], data[:, d], side="right") for d in range(D)], axis=1)
        counts = np.stack([np.bincount(bins[:, d], minlength=n_bins) for d in range(D)])
        sums = np.stack([np.bincount(bins[:, d], weights=data[:, d], minlength=n_bins) for d in range(D)])
        # empty bins (ties left some) decode to their left edge, clipped into the data range
        left = np.concatenate([data.min(0)[:, None], edges], axis=1)
        centres = np.where(counts > 0, sums / np.maximum(counts, 1), np.clip(left, data.min(0)[:, None], data.max(0)[:, None]))
        for d in integer_dims:
            centres[d] = np.arange(n_bins)
        return cls(edges, centres, counts)

    # ---- tokens ----------------------------------------------------------------------------------
    def encode(self, x, start: int = 0) -> np.ndarray:
        """x [..., d] values of dimensions start..start+d-1 -> int64 tokens bin + dim * N (clipped to the bins)."""
        x = np.asarray(x, np.float64)
        d = x.shape[-1]
        if start < 0 or start + d > self.dim:
            raise ValueError(f"dimensions {start}..{start + d - 1} are outside the discretizer's {self.dim}")
        flat = x.reshape(-1, d)
        out = np.empty(flat.shape, np.int64)
        for j in range(d):
            out[:, j] = np.searchsorted(self.edges[start + j], flat[:, j], side="right") + (start + j) * self.n_bins
        return out.reshape(x.shape)

    def decode(self, tokens) -> np.ndarray:
        """tokens [..., d] (each carries its dimension: token // N) -> bin centres [..., d] float64."""
        tokens = np.asarray(tokens, np.int64)
        if tokens.size and (tokens.min() < 0 or tokens.max() >= self.dim * self.n_bins):
            raise ValueError(f"tokens must be in 0..{self.dim * self.n_bins - 1} (stop/pad tokens have no value)")
        return self.centres.reshape(-1)[tokens]

    def reconstruction_error(self, x, start: int = 0) -> float:
        """Mean over rows of the L2 norm of decode(encode(x)) - x: the quantization floor."""
        x = np.asarray(x, np.float64)
        err = self.decode(self.encode(x, start)) - x
        return float(np.linalg.norm(err.reshape(-1, x.shape[-1]), axis=1).mean())

    # ---- JSON ------------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        # Python floats round-trip exactly through json (repr), so decode() is identical after loading
        return {"n_bins": self.n_bins, "edges": self.edges.tolist(), "centres": self.centres.tolist(),
                "counts": self.counts.tolist()}

    @classmethod
    def from_dict(cls, d: dict) -> "QuantileDiscretizer":
        try:
            return cls(d["edges"], d["centres"], d.get("counts"))
        except KeyError as e:
            raise ValueError(f"discretizer dict is missing {e}") from None
