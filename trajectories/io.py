"""One entry point to read any supported file into a Dataset, and to write one back out."""
from __future__ import annotations

from pathlib import Path

from .d4rl_format import write_d4rl
from .dataset import Dataset
from .errors import DatasetError
from .minari_format import read_hdf5, read_minari_dir, read_minari_zip
from .npz_format import read_npz, write_npz
from .table_format import read_csv, read_json, read_parquet, write_csv, write_json, write_parquet

READERS = {
    ".npz": ("npz", read_npz),
    ".parquet": ("parquet", read_parquet),
    ".pq": ("parquet", read_parquet),
    ".csv": ("csv", read_csv),
    ".tsv": ("csv", read_csv),
    ".json": ("json", read_json),
    ".jsonl": ("json", read_json),
    ".hdf5": ("hdf5", read_hdf5),
    ".h5": ("hdf5", read_hdf5),
    ".zip": ("minari", read_minari_zip),
}
WRITERS = {".npz": write_npz, ".parquet": write_parquet, ".csv": write_csv, ".json": write_json,
           ".hdf5": write_d4rl, ".h5": write_d4rl}
SHAPED_WRITERS = (write_npz, write_d4rl)   # the formats that keep an observation's shape (and map it when read)
EXPECTED = ".npz, .parquet, .csv, .json, .hdf5/.h5 (Minari or D4RL), a Minari dataset directory, or a .zip of one"


def load_dataset(path, display_name: str | None = None) -> Dataset:
    """Read a trajectory file. Every failure is a DatasetError whose message is one sentence."""
    path = Path(path)
    name = display_name or path.name
    if not path.exists():
        raise DatasetError(f"{name} does not exist.")
    if path.is_dir():
        return _guard(read_minari_dir, path, name, "a Minari directory")
    suffix = path.suffix.lower()
    if suffix not in READERS:
        raise DatasetError(f"{name}: unknown file type '{suffix or '(none)'}' (expected {EXPECTED}).")
    if path.stat().st_size == 0:
        raise DatasetError(f"{name} is empty (0 bytes).")
    fmt, reader = READERS[suffix]
    ds = _guard(reader, path, name, fmt)
    ds.metadata.setdefault("format", fmt)
    return ds


def save_dataset(ds: Dataset, path) -> None:
    path = Path(path)
    writer = WRITERS.get(path.suffix.lower())
    if writer is None:
        raise DatasetError(f"{path.name}: cannot write '{path.suffix or '(none)'}' (expected one of {', '.join(WRITERS)}).")
    if ds.shaped and writer not in SHAPED_WRITERS:   # a table has one column per value: a 84x84 frame is 7,056 of them
        raise DatasetError(f"{path.name}: a {path.suffix.lower()} table holds vector observations; this dataset's "
                           f"observations are {ds.obs_shape_text} {ds.obs_kind} (write .npz or .hdf5).")
    path.parent.mkdir(parents=True, exist_ok=True)
    writer(ds, path)


def _guard(reader, path: Path, name: str, fmt: str) -> Dataset:
    """Readers raise DatasetError for what they foresee; anything else still becomes one sentence."""
    try:
        return reader(path, name)
    except DatasetError:
        raise
    except MemoryError:
        raise DatasetError(f"{name} is too large to load into memory.") from None
    except Exception as e:  # noqa: BLE001 - the user gets a sentence, never a traceback
        # the exception's own text is not shown: a library's message may quote the file's content
        raise DatasetError(f"{name} could not be read as {fmt} ({type(e).__name__}).") from None
