"""Content keys for agents and datasets: every cache (figures, embeddings) is keyed on what an object
holds, never on `id()` (Python reuses the ids of freed objects, so two sessions' uploads could collide).

A key covers everything a page can show of the object, not only its numbers: two uploads with the same arrays
but other observation names (or metadata, infos, environment id, file name) must never share a cached figure,
or one session would see the other's names. The training-data fingerprint agents store
(`Dataset.fingerprint()`, arrays only) is a different thing and stays as it was.

Loaders stamp the key once (`stamp_*`), when the object is made and before anyone shares it; objects
made in process (training, tests) are hashed on each call instead, so in-place changes never go stale.

Shaped observations (images, frame stacks: gigabytes) enter the key as a 128-bit xxh3 digest of their bytes
(`Dataset.obs_digest`, trajectories/digest.py): ~10 GB/s where sha256 runs at ~0.4 GB/s, computed once per Dataset
when the array is read-only (every memory-mapped file is), read from the file with ordinary reads so the process's
resident memory does not grow by the array's size. Their per-step extras (direction, mission codes) and the mission
strings are in `Dataset.content_key`; observation names are empty for shaped observations.
"""
from __future__ import annotations

import hashlib
import json

import numpy as np

_ATTR = "_seqlens_content_key"


def _canonical(value):
    """A JSON-able form of a value that tells apart everything that shows differently: types are kept (1, 1.0,
    "1", True), arrays are hashed whole (numpy prints long ones with "..."), dict keys keep their type."""
    if isinstance(value, dict):
        return ["dict", sorted([_canonical(k), _canonical(v)] for k, v in value.items())]
    if isinstance(value, (list, tuple)):
        return [type(value).__name__, [_canonical(v) for v in value]]
    if isinstance(value, np.ndarray):
        if value.dtype.hasobject:
            return ["ndarray", str(value.shape), [_canonical(v) for v in value.ravel().tolist()]]
        return ["ndarray", value.dtype.str, str(value.shape),
                hashlib.sha256(np.ascontiguousarray(value).tobytes()).hexdigest()]
    if isinstance(value, np.generic):
        return ["numpy", value.dtype.str, repr(value.item())]
    if value is None or isinstance(value, (bool, int, float, str)):
        return [type(value).__name__, repr(value)]
    return [type(value).__module__ + "." + type(value).__qualname__, repr(value)]


def _hash_shown(h, shown: dict) -> None:
    h.update(json.dumps(_canonical(shown), sort_keys=True).encode())


def _agent_hash(agent) -> str:
    h = hashlib.sha256(agent.kind.encode())
    h.update(json.dumps(agent.config.to_dict(), sort_keys=True, default=str).encode())
    extra = getattr(agent, "__dict__", {})   # what pages show beside the config: load notes, how a variant was made
    _hash_shown(h, {"notes": list(extra.get("notes") or []), "input_choices": dict(extra.get("input_choices") or {}),
                    "randomized_from": extra.get("randomized_from")})
    for name, t in sorted(agent.state_dict().items()):
        h.update(name.encode() + str(tuple(t.shape)).encode() + str(t.dtype).encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:20]


def _dataset_hash(dataset) -> str:
    """The arrays and infos (`Dataset.content_key`) plus every other field of the Dataset: feature and action
    names, the discrete-action count, environment id, source (the file name pages show) and metadata."""
    h = hashlib.sha256(dataset.content_key().encode())
    _hash_shown(h, {"obs_names": dataset.obs_names, "act_names": dataset.act_names, "n_actions": dataset.n_actions,
                    "env_id": dataset.env_id, "source": dataset.source, "metadata": dataset.metadata})
    return h.hexdigest()[:16]


def agent_key(agent) -> str:
    """Hash of the agent's kind, config, notes, the choices that made a variant of it, and weights (stamped at load,
    else computed now)."""
    return getattr(agent, _ATTR, None) or _agent_hash(agent)


def dataset_key(dataset) -> str:
    """The dataset's content key: its arrays, per-step infos such as qpos, names, metadata, environment id and
    source (stamped at load, else computed now)."""
    return getattr(dataset, _ATTR, None) or _dataset_hash(dataset)


def stamp_agent(agent):
    """Compute the agent's key once at load; the agent must not be changed in place afterwards."""
    object.__setattr__(agent, _ATTR, _agent_hash(agent))
    return agent


def stamp_dataset(dataset):
    object.__setattr__(dataset, _ATTR, _dataset_hash(dataset))
    return dataset
