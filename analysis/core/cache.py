"""The one cache under every analysis and figure: keyed on content, bounded by bytes, shared by sessions.

- **Keys** are content: `analysis.core.identity.agent_key` / `dataset_key` (stamped once at load), the
  computation's name and its parameters as JSON. Never `id()`, never the object itself.
- **Values** are stored pickled (in memory, made by this process, never read from a file): every
  caller gets its own copy, so no session can change what another reads, and the byte bound is exact.
- **Owners**: a value computed for a session's upload belongs to that session (`owner` in
  `context`); `release(owner)` when the session ends drops what only it owned. Shipped pairs are SHARED
  and stay until the byte bound evicts them (least recently used first).
- **Progress** travels with the call, not beside it: `with context(progress=cb): ...` and any
  computation inside calls `report(fraction, message)`; a cache hit reports 1.0 at once. So a page
  asks for a figure once and sees the work it causes; it never pre-runs an analysis to drive a bar.
- **Heavy work is capped server-wide**: at most `limits().heavy_analyses` uncached computations run at once
  (SEQLENS_MAX_HEAVY_ANALYSES, 2); one nested inside another (a figure's own cached analysis) runs in its slot.
  A caller that finds no slot free within BUSY_WAIT_S gets BusyError, one sentence; cache hits never wait.

No streamlit import: ui/page.py wires sessions and progress bars to it.
"""
from __future__ import annotations

import contextlib
import contextvars
import json
import pickle
import threading
import time
from collections import OrderedDict
from typing import Callable

from trajectories.limits import limits

from analysis.core.identity import agent_key, dataset_key

SHARED = None   # owner of what shipped agents and datasets make
Progress = Callable[[float, str], None]

_progress: contextvars.ContextVar[Progress | None] = contextvars.ContextVar("seqlens_progress", default=None)
_owner: contextvars.ContextVar[object] = contextvars.ContextVar("seqlens_owner", default=SHARED)
_in_slot: contextvars.ContextVar[bool] = contextvars.ContextVar("seqlens_in_slot", default=False)
BUSY_WAIT_S = 5.0   # how long a computation waits for a free slot before the caller is told the server is busy


class BusyError(ValueError):
    """Every heavy-analysis slot stayed taken for BUSY_WAIT_S; str() is one sentence."""


class Slots:
    """At most limit() computations at once across the process (read at each call, so a server's setting applies
    at once); a computation nested in one that holds a slot (same thread or task) runs in that slot."""

    def __init__(self, limit: Callable[[], int]):
        self._limit = limit
        self._cond = threading.Condition()
        self.active = 0

    @contextlib.contextmanager
    def slot(self, wait: float | None = None):
        if _in_slot.get():
            yield
            return
        deadline = time.monotonic() + (BUSY_WAIT_S if wait is None else wait)
        with self._cond:
            told = False
            while self.active >= self._limit():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise BusyError(f"The server is busy with {self.active} analyses, its limit "
                                    "(SEQLENS_MAX_HEAVY_ANALYSES); try again in a moment.")
                if not told:
                    report(0.0, "waiting for another analysis to finish")
                    told = True
                self._cond.wait(left)
            self.active += 1
        token = _in_slot.set(True)
        try:
            yield
        finally:
            _in_slot.reset(token)
            with self._cond:
                self.active -= 1
                self._cond.notify()


class ResultCache:
    def __init__(self, max_bytes: Callable[[], int]):
        self._max_bytes = max_bytes
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, tuple[bytes, set]] = OrderedDict()
        self.nbytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: str) -> bool:
        return key in self._entries

    def keys(self) -> list[str]:
        return list(self._entries)

    def get(self, key: str, owner=SHARED):
        """A fresh copy of the cached value, or None; the caller becomes an owner too."""
        with self._lock:
            hit = self._entries.get(key)
            if hit is None:
                return None
            self._entries.move_to_end(key)
            hit[1].add(owner)
            blob = hit[0]
        return pickle.loads(blob)

    def put(self, key: str, value, owner=SHARED) -> None:
        blob = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        limit = self._max_bytes()
        if len(blob) > limit:
            return   # larger than the whole cache: recomputed when asked again
        with self._lock:
            old = self._entries.pop(key, None)
            owners = {owner} | (old[1] if old else set())
            if old:
                self.nbytes -= len(old[0])
            self._entries[key] = (blob, owners)
            self.nbytes += len(blob)
            while self.nbytes > limit:
                _, (evicted, _) = self._entries.popitem(last=False)
                self.nbytes -= len(evicted)

    def release(self, owner) -> int:
        """A session ended: it owns nothing any more; values nobody else owns go. Returns how many."""
        return self.purge(lambda o: o != owner)

    def purge(self, alive: Callable[[object], bool]) -> int:
        """Forget owners that are not alive (SHARED always is); drop entries left with none."""
        with self._lock:
            dead = []
            for key, (_, owners) in self._entries.items():
                owners.difference_update({o for o in owners if o is not SHARED and not alive(o)})
                if not owners:
                    dead.append(key)
            for key in dead:
                self.nbytes -= len(self._entries.pop(key)[0])
        return len(dead)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self.nbytes = 0


CACHE = ResultCache(lambda: limits().figure_cache_bytes)
HEAVY = Slots(lambda: limits().heavy_analyses)


@contextlib.contextmanager
def context(progress: Progress | None = None, owner=SHARED):
    """Progress reporting and cache ownership for everything computed inside (per thread / task)."""
    p, o = _progress.set(progress), _owner.set(owner)
    try:
        yield
    finally:
        _progress.reset(p)
        _owner.reset(o)


def report(fraction: float, message: str = "") -> None:
    """Tell whoever asked (a page's progress bar) how far the current computation is."""
    cb = _progress.get()
    if cb is not None:
        cb(float(min(max(fraction, 0.0), 1.0)), message)


def tee(progress: Progress | None) -> Progress:
    """A progress callback that tells both the caller's `progress` (if any) and whoever asked through
    `context` (a page's bar), with the fraction clamped to [0, 1]."""
    def both(fraction: float, message: str = "") -> None:
        fraction = float(min(max(fraction, 0.0), 1.0))
        if progress is not None:
            progress(fraction, message)
        report(fraction, message)
    return both


def key(name: str, agent=None, dataset=None, **params) -> str:
    parts = [name, agent_key(agent) if agent is not None else "-", dataset_key(dataset) if dataset is not None else "-",
             getattr(dataset, "source", "-"), json.dumps(params, sort_keys=True, default=str)]
    return "|".join(parts)


def cached(name: str, compute: Callable[[], object], agent=None, dataset=None, use_cache: bool = True, **params):
    """compute() once per (name, agent content, dataset content, params); later calls get a copy."""
    if not use_cache:
        with HEAVY.slot():
            return compute()
    k = key(name, agent, dataset, **params)
    owner = _owner.get()
    hit = CACHE.get(k, owner)
    if hit is not None:
        report(1.0, "cached")
        return hit
    with HEAVY.slot():   # BusyError when the server computes its limit of analyses already
        hit = CACHE.get(k, owner)   # computed by whoever held the slot while this call waited
        if hit is not None:
            report(1.0, "cached")
            return hit
        value = compute()
    CACHE.put(k, value, owner)
    return value
