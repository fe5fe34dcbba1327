"""Hostile dataset folders and table files, made by hand, for tests and `cli.py bench --hostile` (issue 26, items 3
and 7).

`hostile_folder_files(directory)` writes each case under `directory` and returns one dict per case, as
bench/hostile_data.py does:
  name    short id
  path    the folder (or file) given to trajectories.load_dataset
  expect  a lower-case fragment of the one sentence it must be refused with
  secret  bytes that must never appear in any output (or None)
  kind    "data" (refused by trajectories.load_dataset)

Every folder is a Minari arrow dataset (`data/<id>/part-0.arrow`, as minari writes it) that reads fine without
its one hostile entry. Before issue 26, `cycle` hung `cli.py inspect` (pyarrow's discovery recursed through
`a -> .`, 1.2 GB and rising at 60 s), `episode_to_usr` aborted the process (std::bad_alloc after listing /usr),
`fifo_episode_file` blocked forever on open, and the links to files outside were read.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyarrow as pa

SECRET = b"TOP-SECRET-FOLDER-0xBADC0DE"
SECRET_TEXT = SECRET.decode()


def arrow_episode(path: Path, steps: int = 5, obs_dim: int = 4, seed: int = 0) -> Path:
    """One Minari arrow episode file: steps + 1 rows (the final observation; the other columns padded by one)."""
    rng = np.random.default_rng(seed)
    n = steps + 1
    obs = pa.FixedSizeListArray.from_arrays(pa.array(rng.normal(size=n * obs_dim).astype(np.float32)), obs_dim)
    table = pa.table({"episode_id": pa.array(np.full(n, seed, np.int32)), "observations": obs,
                      "actions": pa.array(np.r_[rng.integers(0, 2, steps), 0].astype(np.int64)),
                      "rewards": pa.array(np.r_[np.ones(steps), 0.0]),
                      "terminations": pa.array(np.r_[np.zeros(steps - 1, bool), True, False]),
                      "truncations": pa.array(np.zeros(n, bool))})
    path.parent.mkdir(parents=True, exist_ok=True)
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    return path


def minari_arrow_folder(root: Path, episodes: int = 2) -> Path:
    """A valid Minari arrow dataset folder: root/data/<id>/part-0.arrow and root/data/metadata.json."""
    for i in range(episodes):
        arrow_episode(root / "data" / str(i) / "part-0.arrow", steps=5 + i, seed=i)
    (root / "data" / "metadata.json").write_text('{"env_spec": "{\\"id\\": \\"CartPole-v1\\"}", '
                                                 '"action_space": "{\\"type\\": \\"Discrete\\", \\"n\\": 2}"}')
    return root


def hostile_folder_files(directory, many_entries: int | None = None) -> list[dict]:
    """many_entries: how many files the entry-limit case holds (default: the limit in force + 1, i.e. 100,001
    empty files under SEQLENS_MAX_WALK_ENTRIES' default: about 1 s to make on ext4 or tmpfs)."""
    from trajectories.limits import limits

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    outside = d / "outside"
    outside.mkdir(exist_ok=True)
    (outside / "secret.txt").write_bytes(SECRET)
    arrow_episode(outside / "secret.arrow", seed=7)
    minari_arrow_folder(outside / "elsewhere")
    out = []

    def case(name: str, expect: str, secret: bool = False) -> Path:
        root = minari_arrow_folder(d / name)
        out.append({"name": name, "path": root, "expect": expect, "secret": SECRET if secret else None, "kind": "data"})
        return root

    ep = case("minari_symlink_cycle", "symbolic link") / "data" / "0"
    os.symlink(".", ep / "a")
    os.symlink(".", ep / "b")
    root = case("minari_episode_to_usr", "symbolic link")
    os.symlink("/usr", root / "data" / "2")
    root = case("minari_data_folder_elsewhere", "symbolic link")
    os.rename(root / "data", root / "data-moved")
    os.symlink(outside / "elsewhere" / "data", root / "data")
    root = case("minari_episode_file_outside", "symbolic link", secret=True)
    os.symlink(outside / "secret.txt", root / "data" / "1" / "part-1.arrow")
    root = case("minari_arrow_file_outside", "symbolic link")
    (root / "data" / "1" / "part-0.arrow").unlink()
    os.symlink(outside / "secret.arrow", root / "data" / "1" / "part-0.arrow")
    root = case("minari_metadata_outside", "symbolic link", secret=True)
    (root / "data" / "metadata.json").unlink()
    os.symlink(outside / "secret.txt", root / "data" / "metadata.json")
    root = case("minari_fifo_episode_file", "not a regular file")
    os.mkfifo(root / "data" / "1" / "part-1.arrow")
    root = case("minari_too_deep", "seqlens_max_walk_depth")
    deep = root / "data" / "1"
    for i in range(limits().walk_depth):
        deep = deep / f"d{i}"
    arrow_episode(deep / "part-0.arrow", seed=3)
    root = case("minari_too_many_entries", "seqlens_max_walk_entries")
    many = root / "data" / "1" / "_empty"   # '_' files: pyarrow's discovery skipped them, but they were listed
    many.mkdir()
    for i in range(limits().walk_entries + 1 if many_entries is None else many_entries):
        (many / f"_{i}").touch()
    csv = d / "secret_in_action.csv"
    csv.write_text("episode,step,obs_0,action,reward\n0,0,0.1,1,1\n0,1,0.2," + SECRET_TEXT + ",1\n")
    out.append({"name": "csv_secret_in_action", "path": csv, "expect": "action is not a number at row 2",
                "secret": SECRET, "kind": "data"})
    return out
