"""The one directory walker every directory reader uses (Minari folders, ui/local.py's change keys, agent folders).

It never follows a symbolic link: a link is listed as a link (by its own lstat), never entered, never stat'ed
through, so no walk can leave the folder it was given or loop (`ln -s . a` inside a dataset once made pyarrow's
discovery recurse until the process held gigabytes; `data/0 -> /usr` made it list all of /usr). Readers decide
what a link means to them: the dataset readers refuse one they would read (`refuse_link`), the change key counts
it by its lstat. It is bounded: at most `limits().walk_entries` entries listed and `limits().walk_depth` folders
deep (SEQLENS_MAX_WALK_ENTRIES, SEQLENS_MAX_WALK_DEPTH), one sentence past either. A folder reached twice
(a bind mount of a parent) is refused too. The given root itself is resolved first: naming a link to a folder
opens that folder.

What it cannot promise: a folder changed *while* it is read (a file swapped for a link between the walk and the
read) is not detected; seqlens reads folders it is given on the server's own disk, so that needs write access
to them.
"""
from __future__ import annotations

import os
import stat as stat_mod
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .errors import DatasetError
from .limits import ENV, limits


@dataclass(frozen=True)
class Entry:
    rel: str           # posix path relative to the root ("data/0/part-0.arrow")
    path: Path         # root / rel (never resolved: resolving would follow links)
    kind: str          # "file", "dir", "link" or "other" (fifo, socket, device: never opened)
    size: int
    mtime_ns: int
    ctime_ns: int      # inode change time: set by the kernel, user code cannot set it back
    ino: int

    @property
    def name(self) -> str:
        return self.rel.rsplit("/", 1)[-1]

    @property
    def parent(self) -> str:
        return self.rel.rsplit("/", 1)[0] if "/" in self.rel else ""


def _kind(mode: int) -> str:
    if stat_mod.S_ISLNK(mode):
        return "link"
    if stat_mod.S_ISDIR(mode):
        return "dir"
    if stat_mod.S_ISREG(mode):
        return "file"
    return "other"


def walk(root, name: str, descend: Callable[[str], bool] = lambda rel: True,
         error: type[Exception] = DatasetError) -> list[Entry]:
    """Every entry under root (resolved), sorted by path, without following any link. `descend(rel)` says
    whether to enter the sub-folder `rel` (its own entry is listed either way). Raises `error` with one
    sentence naming `name` past the entry or depth limit, or when a folder is reached twice."""
    root = Path(root).resolve()
    lim = limits()
    info = os.lstat(root)
    if not stat_mod.S_ISDIR(info.st_mode):
        raise error(f"{name} is not a folder.")
    seen_dirs = {(info.st_dev, info.st_ino)}
    out: list[Entry] = []
    stack: list[tuple[str, int]] = [("", 0)]
    while stack:
        rel_dir, depth = stack.pop()
        children = []
        with os.scandir(root / rel_dir if rel_dir else root) as it:
            for e in it:
                if len(out) + len(children) >= lim.walk_entries:
                    raise error(f"{name} holds more than {lim.walk_entries:,} files and folders; the limit is "
                                f"{lim.walk_entries:,} ({ENV['walk_entries']}).")
                s = e.stat(follow_symlinks=False)
                rel = f"{rel_dir}/{e.name}" if rel_dir else e.name
                children.append(Entry(rel, root / rel, _kind(s.st_mode), s.st_size, s.st_mtime_ns, s.st_ctime_ns,
                                      s.st_ino))
                if children[-1].kind == "dir":
                    key = (s.st_dev, s.st_ino)
                    if key in seen_dirs:
                        raise error(f"{name}: the folder {rel} is reached twice (a mount of one of its own parents); "
                                    "seqlens refuses to walk it.")
                    seen_dirs.add(key)
        children.sort(key=lambda c: c.rel)
        out += children
        for c in reversed(children):
            if c.kind == "dir" and descend(c.rel):
                if depth + 1 > lim.walk_depth:
                    raise error(f"{name}: {c.rel} is nested more than {lim.walk_depth} folders deep; the limit is "
                                f"{lim.walk_depth} ({ENV['walk_depth']}).")
                stack.append((c.rel, depth + 1))
    out.sort(key=lambda c: c.rel)
    return out


def refuse_link(entry: Entry, name: str, what: str = "a dataset folder", error: type[Exception] = DatasetError) -> None:
    """One sentence for an entry a reader would read that is a link or not a regular file / folder."""
    if entry.kind == "link":
        raise error(f"{name}: {entry.rel} is a symbolic link; seqlens does not follow links inside {what} "
                    "(one can point outside it or loop back into it), so copy the file in instead.")
    if entry.kind == "other":
        raise error(f"{name}: {entry.rel} is not a regular file or folder (a pipe, socket or device), so seqlens "
                    "does not read it.")
