"""Content keys for agents and datasets: every cache (figures, embeddings) is keyed on what an object
holds, never on `id()` (Python reuses the ids of freed objects, so two sessions' uploads could collide).

Loaders stamp the key once (`stamp_*`), when the object is made and before anyone shares it; objects
made in process (training, tests) are hashed on each call instead, so in-place changes never go stale.
"""
from __future__ import annotations

import hashlib
import json

_ATTR = "_seqlens_content_key"


def _agent_hash(agent) -> str:
    h = hashlib.sha256(agent.kind.encode())
    h.update(json.dumps(agent.config.to_dict(), sort_keys=True, default=str).encode())
    for name, t in sorted(agent.state_dict().items()):
        h.update(name.encode() + str(tuple(t.shape)).encode() + str(t.dtype).encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:20]


def agent_key(agent) -> str:
    """Hash of the agent's kind, config and weights (stamped at load, else computed now)."""
    return getattr(agent, _ATTR, None) or _agent_hash(agent)


def dataset_key(dataset) -> str:
    """The dataset's content key: its fingerprint plus any per-step infos such as qpos (stamped at load, else
    computed now)."""
    return getattr(dataset, _ATTR, None) or dataset.content_key()


def stamp_agent(agent):
    """Compute the agent's key once at load; the agent must not be changed in place afterwards."""
    object.__setattr__(agent, _ATTR, _agent_hash(agent))
    return agent


def stamp_dataset(dataset):
    object.__setattr__(dataset, _ATTR, dataset.content_key())
    return dataset
