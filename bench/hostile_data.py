"""Hostile dataset files, written by hand, for tests, the upload AppTest and `cli.py bench --hostile`.

`hostile_dataset_files(directory)` writes each file into `directory` and returns one dict per file:
  name    short id
  path    the file
  expect  a lower-case fragment the reader's one-sentence error must contain
  secret  bytes of a file beside it that the hostile file tries to make seqlens read (or None);
          they must never appear in any output

Every file is under 1 MB except `zip_too_many_entries` (about 2.4 MB: a zip central directory
entry takes at least 47 bytes, so 50,001 of them cannot fit in less). Bombs *declare* large sizes:
the npz bomb's member says 1.07 GiB (its header and zip size both) but holds a deflate stream of
only its first 512 MiB (0.5 MB on disk), which is what np.load would allocate and inflate.
"""
from __future__ import annotations

import json
import struct
import zipfile
import zlib
from pathlib import Path

import h5py
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

SECRET = b"TOP-SECRET-0xC0FFEE"
CSV_HEADER = "episode,step,obs_0,obs_1,action,reward,terminated\n"


def hostile_dataset_files(directory) -> list[dict]:
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    secret = d / "secret.bin"
    secret.write_bytes(SECRET)
    with h5py.File(d / "secret.hdf5", "w") as f:
        f["data"] = np.frombuffer(SECRET, np.uint8).reshape(-1, 1)
    out = []

    def add(name, path, expect, leaks=False):
        out.append({"name": name, "path": Path(path), "expect": expect, "secret": SECRET if leaks else None})

    add("hdf5_external_storage", _d4rl(d / "external_storage.hdf5", external=secret), "external file", True)
    add("hdf5_external_link", _d4rl(d / "external_link.hdf5", link=h5py.ExternalLink(str(d / "secret.hdf5"), "/data")),
        "external link", True)
    add("hdf5_soft_link", _d4rl(d / "soft_link.hdf5", link=h5py.SoftLink("/zz_ext/data"), ext_group=d / "secret.hdf5"),
        "soft link", True)
    add("hdf5_virtual_dataset", _d4rl(d / "virtual.hdf5", virtual=d / "secret.hdf5"), "virtual dataset", True)
    add("minari_zip_external_storage", _minari_zip(d / "minari_external.zip", secret), "external file", True)
    add("hdf5_unwritten_chunks_bomb", _hdf5_bomb(d / "chunk_bomb.hdf5"), "seqlens_max_decode_bytes")
    add("csv_action_1e9", _text(d / "action_1e9.csv", CSV_HEADER + "0,0,1,2,0,1,0\n0,1,1,2,1000000000,1,1\n"), "seqlens_max_actions")
    add("csv_beyond_float32", _text(d / "beyond_f32.csv", CSV_HEADER + "0,0,1,2,0,1,0\n0,1,1e39,2,1,1,1\n"), "beyond the float32 range")
    add("npz_n_actions_1e12", _npz(d / "n_actions_huge.npz", meta={"n_actions": 10**12}), "seqlens_max_actions")
    add("npz_n_actions_2_5", _npz(d / "n_actions_frac.npz", meta={"n_actions": 2.5}), "whole number")
    add("npz_meta_not_object", _npz(d / "meta_list.npz", meta=[1, 2]), "must be a json object")
    add("npz_meta_bad_names", _npz(d / "meta_names.npz", meta={"obs_names": [1, 2]}), "not a list of strings")
    add("npz_complex", _npz(d / "complex.npz", observations=np.ones((6, 2)) + 1j), "complex")
    add("npz_episode_ids_not_grouped", _npz(d / "ids.npz", episode=np.array([0, 0, 1, 1, 0, 0])), "grouped by episode")
    add("npz_fractional_lengths", _npz(d / "lengths.npz", episode_lengths=np.array([2.5, 3.5])), "whole numbers")
    add("npz_truncated_member", _npz_truncated(d / "truncated.npz"), "truncated or corrupt")
    add("npz_bomb", _npz_bomb(d / "bomb.npz"), "seqlens_max_decode_bytes")
    add("parquet_bomb", _parquet_bomb(d / "bomb.parquet"), "seqlens_max_transitions")
    add("zip_too_many_entries", _many_entries_zip(d / "many.zip"), "seqlens_max_zip_entries")
    return out


# ---- HDF5 ---------------------------------------------------------------------------------------

def _d4rl(path: Path, external=None, link=None, ext_group=None, virtual=None) -> Path:
    """A D4RL file whose observations come from somewhere else; the other arrays are ordinary."""
    n = len(SECRET)
    with h5py.File(path, "w") as f:
        if external is not None:  # raw storage in another file: reading it returns that file's bytes
            f.create_dataset("observations", shape=(n, 1), dtype="u1", external=[(str(external), 0, n)])
        elif link is not None:
            f["observations"] = link
            if ext_group is not None:
                f["zz_ext"] = h5py.ExternalLink(str(ext_group), "/")
        else:
            layout = h5py.VirtualLayout(shape=(n, 1), dtype="u1")
            layout[:] = h5py.VirtualSource(str(virtual), "data", shape=(n, 1))
            f.create_virtual_dataset("observations", layout)
        f["actions"] = np.zeros(n, np.int64)
        f["rewards"] = np.zeros(n, np.float32)
        f["terminals"] = np.eye(1, n, n - 1, dtype=bool)[0]
        f["timeouts"] = np.zeros(n, bool)
    return path


def _minari_zip(path: Path, secret: Path) -> Path:
    import io

    n = len(SECRET)
    buf = io.BytesIO()
    with h5py.File(buf, "w") as f:
        ep = f.create_group("episode_0")
        ep.create_dataset("observations", shape=(n + 1, 1), dtype="u1", external=[(str(secret), 0, n), (str(secret), 0, 1)])
        ep["actions"] = np.zeros(n, np.int64)
        ep["rewards"] = np.zeros(n, np.float32)
        ep["terminations"] = np.eye(1, n, n - 1, dtype=bool)[0]
        ep["truncations"] = np.zeros(n, bool)
    meta = {"dataset_id": "hostile/leak-v0", "env_spec": json.dumps({"id": "CartPole-v1"}),
            "action_space": json.dumps({"type": "Discrete", "n": 2})}
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("hostile/data/main_data.hdf5", buf.getvalue())
        zf.writestr("hostile/data/metadata.json", json.dumps(meta))
    return path


def _hdf5_bomb(path: Path) -> Path:
    """Chunked datasets with no chunk written: a 2 KB file whose arrays read as 5 GiB of fill values."""
    n = 20_000_000
    with h5py.File(path, "w") as f:
        f.create_dataset("observations", shape=(n, 64), dtype="f4", chunks=(4096, 64))
        f.create_dataset("actions", shape=(n,), dtype="i8", chunks=(65536,))
        f.create_dataset("rewards", shape=(n,), dtype="f4", chunks=(65536,))
        f.create_dataset("terminals", shape=(n,), dtype="u1", chunks=(65536,))
    return path


# ---- text ---------------------------------------------------------------------------------------

def _text(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# ---- npz / zip written byte by byte ---------------------------------------------------------------

def _npz(path: Path, meta=None, **override) -> Path:
    """A valid six-step npz with some arrays or the seqlens_meta entry replaced."""
    arrays = {"observations": np.arange(12, dtype=np.float32).reshape(6, 2), "actions": np.array([0, 1, 1, 0, 1, 0]),
              "rewards": np.ones(6, np.float32), "terminated": np.eye(1, 6, 5, dtype=bool)[0], **override}
    if meta is not None:
        arrays["seqlens_meta"] = np.array(json.dumps(meta))
    members = []
    for key, arr in arrays.items():
        data = _npy(arr)
        members.append((f"{key}.npy", 0, data, zlib.crc32(data), len(data)))
    _write_zip(path, members)
    return path


def _npy(arr: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.asarray(arr), allow_pickle=False)
    return buf.getvalue()


def _npy_header(shape: tuple, descr: str) -> bytes:
    buf = __import__("io").BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": descr, "fortran_order": False, "shape": shape})
    return buf.getvalue()


def _npz_truncated(path: Path) -> Path:
    """observations' header says 6 x 4 float64 (192 bytes) but the member holds 40 bytes of data."""
    good = {m[0]: m for m in _members_of(_npz(path))}
    data = _npy_header((6, 4), "<f8") + bytes(40)
    good["observations.npy"] = ("observations.npy", 0, data, zlib.crc32(data), len(data))
    _write_zip(path, list(good.values()))
    return path


def _npz_bomb(path: Path) -> Path:
    """9,000,000 x 32 float32 observations declared (1.07 GiB, the zip's size field agrees); the
    deflate stream is 512 identical 1 MiB-of-zeros blocks (deflate's ratio caps near 1000:1)."""
    header = _npy_header((9_000_000, 32), "<f4")
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    zeros = bytes(1 << 20)
    first = comp.compress(header) + comp.flush(zlib.Z_FULL_FLUSH)
    block = comp.compress(zeros) + comp.flush(zlib.Z_FULL_FLUSH)  # the dictionary is reset: every block is the same
    stream = first + block * 512 + comp.flush(zlib.Z_FINISH)
    declared = len(header) + 9_000_000 * 32 * 4
    small = [m for m in _members_of(_npz(path)) if m[0] != "observations.npy"]
    _write_zip(path, [("observations.npy", 8, stream, 0, declared)] + small)
    return path


def _many_entries_zip(path: Path) -> Path:
    """50,001 central directory entries that share one empty local file."""
    local = _local_header("a", 0, 0, 0, 0)
    entry = _central_entry("a", 0, 0, 0, 0, 0)
    count = 50_001
    with open(path, "wb") as f:
        f.write(local)
        f.write(entry * count)
        f.write(_end_record(count, len(entry) * count, len(local)))
    return path


def _members_of(path: Path) -> list[tuple]:
    with zipfile.ZipFile(path) as zf:
        return [(i.filename, 0, zf.read(i), i.CRC, i.file_size) for i in zf.infolist()]


def _write_zip(path: Path, members: list[tuple]) -> None:
    """members: (name, method 0 stored | 8 deflated, raw bytes, crc, declared uncompressed size)."""
    with open(path, "wb") as f:
        central = b""
        for name, method, raw, crc, size in members:
            offset = f.tell()
            f.write(_local_header(name, method, crc, len(raw), size) + raw)
            central += _central_entry(name, method, crc, len(raw), size, offset)
        start = f.tell()
        f.write(central + _end_record(len(members), len(central), start))


def _local_header(name: str, method: int, crc: int, csize: int, size: int) -> bytes:
    n = name.encode()
    return struct.pack("<4sHHHHHIIIHH", b"PK\x03\x04", 20, 0, method, 0, 0x21, crc, csize, size, len(n), 0) + n


def _central_entry(name: str, method: int, crc: int, csize: int, size: int, offset: int) -> bytes:
    n = name.encode()
    return struct.pack("<4sHHHHHHIIIHHHHHII", b"PK\x01\x02", 20, 20, 0, method, 0, 0x21, crc, csize, size,
                       len(n), 0, 0, 0, 0, 0, offset) + n


def _end_record(count: int, cd_size: int, cd_offset: int) -> bytes:
    return struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, min(count, 0xFFFF), min(count, 0xFFFF), cd_size, cd_offset, 0)


# ---- parquet ------------------------------------------------------------------------------------

def _parquet_bomb(path: Path) -> Path:
    """21 row groups of 1,048,576 zero rows: 0.3 MB on disk, 22,020,096 steps declared."""
    n = 1 << 20
    zeros = pa.array(np.zeros(n, np.float32))
    table = pa.table({"episode": pa.array(np.zeros(n, np.int8)), "obs_0": zeros, "action": pa.array(np.zeros(n, np.int8)),
                      "reward": zeros})
    with pq.ParquetWriter(path, table.schema, compression="zstd") as w:
        for _ in range(21):
            w.write_table(table)
    return path
