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
- **Shared objects** (`shared(name, key, make, kept=...)`): what must not be copied (agents, datasets, normalised
  arrays, variants of an agent) lives in the same cache under the same rules, without the pickling: made once per key
  (concurrent callers wait for the one making it), shared by every caller and never changed by any (arrays are
  frozen, agents are only ever replaced by variants), the `kept` most recent per name, owners and per-session cleanup
  as for results. A key names content: `agent_key` / `dataset_key` for objects made from other objects, the resolved
  path and its change key (mtime, size, content hash) for objects read from a file. `ttl` makes an entry expire
  (a directory's change key is re-walked at most once per `ttl`).
- **On disk** (`on_disk(directory, key, compute, save, load)`): results that should survive a restart (UMAP
  embeddings), as files named by their content key under `$SEQLENS_CACHE`, read without pickle, pruned to
  `limits().embedding_cache_bytes` least recently used first; under the in-memory entry of the same key.
- **Heavy work is capped server-wide**: at most `limits().heavy_analyses` uncached computations run at once
  (SEQLENS_MAX_HEAVY_ANALYSES, 2); one nested inside another (a figure's own cached analysis) runs in its slot.
  A caller that finds no slot free within BUSY_WAIT_S gets BusyError, one sentence; cache hits never wait.

No streamlit import: ui/page.py wires sessions and progress bars to it.
"""
from __future__ import annotations

import contextlib
import contextvars
import json
import os
import pickle
import threading
import time
from collections import OrderedDict
from pathlib import Path
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


class SharedObjects:
    """Objects every caller shares as they are (no copy): per name, the `kept` most recently used keys."""

    def __init__(self):
        self._lock = threading.Lock()
        self._entries: dict[str, OrderedDict] = {}    # name -> key -> [value, owners, made_at]
        self._making: dict[tuple, threading.Lock] = {}

    def __len__(self) -> int:
        return sum(len(e) for e in self._entries.values())

    def holds(self, name: str, key, ttl: float | None = None) -> bool:
        with self._lock:
            hit = self._entries.get(name, {}).get(key)
            return hit is not None and (ttl is None or time.monotonic() - hit[2] < ttl)

    def _get(self, name: str, key, owner, ttl: float | None):
        with self._lock:
            entries = self._entries.setdefault(name, OrderedDict())
            hit = entries.get(key)
            if hit is None or (ttl is not None and time.monotonic() - hit[2] >= ttl):
                return False, None
            entries.move_to_end(key)
            hit[1].add(owner)
            return True, hit[0]

    def get(self, name: str, key, make: Callable[[], object], kept: int, owner=SHARED, ttl: float | None = None):
        found, value = self._get(name, key, owner, ttl)
        if found:
            return value
        with self._lock:
            making = self._making.setdefault((name, key), threading.Lock())
        with making:   # one maker per key; the others wait for its object instead of making their own
            found, value = self._get(name, key, owner, ttl)
            if not found:
                value = make()
                with self._lock:
                    entries = self._entries.setdefault(name, OrderedDict())
                    old = entries.pop(key, None)
                    entries[key] = [value, {owner} | (old[1] if old else set()), time.monotonic()]
                    while len(entries) > kept:
                        entries.popitem(last=False)
        with self._lock:
            self._making.pop((name, key), None)
        return value

    def drop(self, name: str, key=None) -> None:
        """Forget one entry, or every entry of a name."""
        with self._lock:
            if key is None:
                self._entries.pop(name, None)
            else:
                self._entries.get(name, {}).pop(key, None)

    def release(self, owner) -> int:
        return self.purge(lambda o: o != owner)

    def purge(self, alive: Callable[[object], bool]) -> int:
        """As ResultCache.purge: forget owners that are not alive; drop entries left with none."""
        dropped = 0
        with self._lock:
            for entries in self._entries.values():
                dead = []
                for key, (_, owners, _) in entries.items():
                    owners.difference_update({o for o in owners if o is not SHARED and not alive(o)})
                    if not owners:
                        dead.append(key)
                for key in dead:
                    del entries[key]
                dropped += len(dead)
        return dropped

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


CACHE = ResultCache(lambda: limits().figure_cache_bytes)
OBJECTS = SharedObjects()
HEAVY = Slots(lambda: limits().heavy_analyses)


_FROM_CONTEXT = object()


def shared(name: str, key, make: Callable[[], object], kept: int, ttl: float | None = None, owner=_FROM_CONTEXT):
    """The object `make()` returns, made once per (name, key) and shared as it is by every caller; the caller's
    session (`owner`, else the one `context` set) becomes an owner; the `kept` most recently used per name stay."""
    return OBJECTS.get(name, key, make, kept, _owner.get() if owner is _FROM_CONTEXT else owner, ttl)


def release(owner) -> int:
    """A session ended: results and shared objects only it owned go. Returns how many entries went."""
    return CACHE.release(owner) + OBJECTS.release(owner)


def purge(alive: Callable[[object], bool]) -> int:
    return CACHE.purge(alive) + OBJECTS.purge(alive)


def cache_root() -> Path:
    """Where results that survive a restart live: $SEQLENS_CACHE, else ~/.cache/seqlens."""
    return Path(os.environ.get("SEQLENS_CACHE") or Path.home() / ".cache" / "seqlens")


def prune_disk(directory: Path, max_bytes: int | None = None, pattern: str = "*.npz") -> int:
    """Keep a disk directory under max_bytes (limits().embedding_cache_bytes): the least recently used files go
    first (a hit touches its file). Returns the bytes removed."""
    max_bytes = limits().embedding_cache_bytes if max_bytes is None else max_bytes
    try:
        files = [(f.stat().st_mtime, f.stat().st_size, f) for f in Path(directory).glob(pattern)]
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


def on_disk(directory: Path, key: str, compute: Callable[[], object], save: Callable[[object, Path], None],
            load: Callable[[Path], object], use: bool = True, progress: Progress | None = None):
    """compute() once per content `key` across restarts: read back with `load` (never a pickle) when the file is
    there, else computed, written with `save` and the directory pruned. A damaged file is recomputed; a read-only
    directory leaves the in-memory cache to do the work."""
    path = Path(directory) / f"{key}.npz"
    if use and path.exists():
        try:
            value = load(path)
            os.utime(path)   # least recently used goes first when the directory is pruned
            tee(progress)(1.0, "cached on disk")
            return value
        except Exception:  # noqa: BLE001 - a damaged cache file is recomputed
            path.unlink(missing_ok=True)
    value = compute()
    if use:
        try:
            save(value, path)
            prune_disk(path.parent)
        except OSError:
            pass
    return value


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
