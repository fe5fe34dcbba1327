"""The figure cache all sessions of a server share: keyed on content, bounded by bytes, and private
figures (of uploads) leave it when every session that made them has ended.

Values are stored pickled (in memory, made by this process, never read from a file), which gives each
caller its own copy (a page that restyles its figure cannot change another session's) and an exact
size to bound the cache by. No streamlit import: ui/page.py wires it to sessions.
"""
from __future__ import annotations

import pickle
import threading
from collections import OrderedDict
from typing import Callable

SHARED = None   # owner of figures of shipped agents and datasets: kept until the byte bound evicts them


class FigureCache:
    def __init__(self, max_bytes: Callable[[], int]):
        self._max_bytes = max_bytes
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, tuple[bytes, set]] = OrderedDict()
        self.nbytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: str) -> bool:
        return key in self._entries

    def get(self, key: str, owner=SHARED):
        """A fresh copy of the cached value, or None; the caller's session becomes an owner too."""
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
        """A session ended: it owns nothing any more; figures nobody else owns go. Returns how many."""
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
