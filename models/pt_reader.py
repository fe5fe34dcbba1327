"""Reading a PyTorch `.pt` / `.bin` file (a pickle) without running or trusting any of it: `cli.py convert-agent` only.

The browser upload and `load_agent` keep refusing pickles; this reader exists so a user can turn their own
CORL `dt_checkpoint.pt` or HF `pytorch_model.bin` into config.json + model.safetensors once, on the command
line. torch.load is never called: torch's weights-only unpickler lets a file allocate through its allow-list
(`bytearray(3 << 30)`, numpy object arrays, stride-0 views) and set attributes on tensors
(`_rebuild_from_type_v2`). Instead (models/pickle_scan.py):

1. the container: torch.save's zip format, stored (uncompressed) members, within limits().decode_bytes and
   zip_entries, no duplicate or escaping names, one `<archive>/data.pkl` of at most 16 MiB;
2. the pickle's opcodes walked without building anything (count, opcode set, memo indices, globals);
3. the pickle unpickled with stand-ins for every allowed global (tensor records, numpy float arrays for CORL's
   statistics, OrderedDict), each checking its arguments; storage records checked against the zip members;
4. the records: contiguous tensors of allowed dtypes within their storages, no two sharing bytes, totals within
   the file's size, decode_bytes and agent_params;
5. only then each storage's bytes read once and turned into tensors of the verified dtype and shape (bfloat16
   becomes float32, exactly; bool masks are 0 / 1).

Every failure is an AgentError with one sentence naming the file; nothing in the file runs or allocates
past the checks.
"""
from __future__ import annotations

import zipfile
from pathlib import Path, PurePosixPath

import numpy as np

from trajectories.limits import ENV, human_bytes, limits

from .errors import AgentError
from .pickle_scan import ArrayRef, Refused, TensorRef, check_records, unpickle

_NUMPY = {"float32": np.float32, "float64": np.float64, "float16": np.float16, "bool": np.uint8, "uint8": np.uint8,
          "int8": np.int8, "int32": np.int32, "int64": np.int64}


def _short(e: BaseException) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return (text if len(text) <= 160 else text[:157] + "...").rstrip(".")


def _check_container(path: Path, name: str) -> list[zipfile.ZipInfo]:
    size = path.stat().st_size
    cap = limits().decode_bytes
    if size > cap:
        raise AgentError(f"{name} is {human_bytes(size)}, over the limit of {human_bytes(cap)} (decode_bytes, set by {ENV['decode_bytes']}).")
    if not zipfile.is_zipfile(path):
        raise AgentError(f"{name} is not in torch.save's zip format (the default since PyTorch 1.6); seqlens does not read "
                         "the legacy format, whose storages declare their own sizes.")
    try:
        with zipfile.ZipFile(path) as zf:
            members = zf.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError) as e:
        raise AgentError(f"{name} is a damaged zip file ({_short(e)}).") from None
    if len(members) > limits().zip_entries:
        raise AgentError(f"{name} has {len(members)} zip entries, over the limit of {limits().zip_entries} "
                         f"(zip_entries, set by {ENV['zip_entries']}).")
    packed = [m.filename for m in members if m.compress_type != zipfile.ZIP_STORED]
    if packed:
        raise AgentError(f"{name} holds a compressed member ({packed[0][:60]}), which torch.save never writes; refusing it.")
    total = sum(m.file_size for m in members)
    if total > cap:
        raise AgentError(f"{name} declares {human_bytes(total)} of members, over the limit of {human_bytes(cap)} "
                         f"(decode_bytes, set by {ENV['decode_bytes']}).")
    if total > size:
        raise AgentError(f"{name} declares {total:,} bytes of members in a file of {size:,} bytes (members overlap); "
                         "torch.save never writes that.")
    return members


def _layout(zf: zipfile.ZipFile, members: list[zipfile.ZipInfo], name: str):
    """(data.pkl's member, storage key -> member, byte order) of torch.save's layout: <archive>/data.pkl,
    <archive>/data/<key>, <archive>/byteorder."""
    names = [m.filename for m in members]
    if len(set(names)) != len(names):
        raise AgentError(f"{name} holds two zip members of the same name, which torch.save never writes.")
    pkl = [m for m in members if len(PurePosixPath(m.filename).parts) == 2 and PurePosixPath(m.filename).name == "data.pkl"]
    if len(pkl) != 1:
        raise AgentError(f"{name} has {'no' if not pkl else 'more than one'} <archive>/data.pkl, so it is not a torch.save file.")
    archive = PurePosixPath(pkl[0].filename).parts[0]
    records, order = {}, "little"
    for m in members:
        parts = PurePosixPath(m.filename).parts
        if len(parts) == 3 and parts[0] == archive and parts[1] == "data":
            records[parts[2]] = m
        elif len(parts) == 2 and parts[0] == archive and parts[1] == "byteorder":
            raw = zf.read(m) if m.file_size <= 16 else b""
            if raw not in (b"little", b"big"):
                raise AgentError(f"{name}: its byteorder record is not 'little' or 'big'.")
            order = raw.decode()
    return pkl[0], records, order


def _array(raw, dtype: str, order: str, count: int, offset: int, shape) -> np.ndarray:
    """`count` values of `dtype` at element `offset` of raw bytes, as a native-order array of `shape` (a copy
    only where a conversion needs one). bfloat16 -> float32 exactly; bool -> 0 / 1."""
    end = "<" if order == "little" else ">"
    if dtype == "bfloat16":
        half = np.frombuffer(raw, np.dtype(end + "u2"), count, offset * 2)
        out = (half.astype(np.uint32) << 16).view(np.float32)
    else:
        np_dtype = np.dtype(_NUMPY[dtype])
        np_dtype = np_dtype.newbyteorder(end) if np_dtype.itemsize > 1 else np_dtype
        out = np.frombuffer(raw, np_dtype, count, offset * np_dtype.itemsize)
        if dtype == "bool":
            out = out != 0
        elif not np_dtype.isnative:
            out = out.astype(np_dtype.newbyteorder("="))
    return out.reshape(shape)


def _materialize(obj, zf: zipfile.ZipFile, records: dict, order: str):
    """The checked tree with TensorRef -> torch tensors and ArrayRef -> numpy arrays; each storage read once."""
    import torch

    buffers, made = {}, {}

    def tensor(ref: TensorRef):
        if id(ref) not in made:
            key = ref.storage.key
            if key not in buffers:
                buffers[key] = bytearray(zf.read(records[key]))   # exactly the checked size; CRC checked by zipfile
            arr = _array(buffers[key], ref.storage.dtype, order, ref.numel, ref.offset, ref.shape)
            if not arr.flags.writeable:
                arr = arr.copy()
            made[id(ref)] = torch.from_numpy(arr)
        return made[id(ref)]

    def array(ref: ArrayRef) -> np.ndarray:
        end = {"<": "<", ">": ">", "=": "=", "|": "="}[ref.dtype.byteorder]
        dt = np.dtype(end + ref.dtype.code)
        out = np.frombuffer(ref.raw, dt).reshape(ref.shape, order="F" if ref.fortran else "C")
        return out.astype(dt.newbyteorder("="), copy=True)

    seen = {}

    def walk(o):
        if isinstance(o, TensorRef):
            return tensor(o)
        if isinstance(o, ArrayRef):
            return array(o)
        if isinstance(o, (dict, list, tuple)):
            if id(o) in seen:
                return seen[id(o)]
            if isinstance(o, dict):
                out = seen[id(o)] = {}
                for k, v in o.items():
                    out[k] = walk(v)
            elif isinstance(o, list):
                out = seen[id(o)] = []
                out.extend(walk(v) for v in o)
            else:
                out = seen[id(o)] = tuple(walk(v) for v in o)
            return out
        return o

    return walk(obj)


def read_pt(path, name: str | None = None, numpy_arrays: bool = False):
    """The object a torch.save file holds: dicts, lists, tuples, plain values and CPU tensors (float16 /
    float32 / float64, bfloat16 read as float32, bool, uint8, int8 / 32 / 64); with numpy_arrays also numpy
    float32 / float64 arrays. Every failure is an AgentError with one sentence; nothing in the file runs, and
    nothing is allocated before the pickle and the storage records have been checked (models/pickle_scan.py)."""
    path = Path(path)
    name = name or path.name
    if not path.is_file():
        raise AgentError(f"{name} does not exist or is not a file.")
    members = _check_container(path, name)
    what = "tensors and numpy float arrays" if numpy_arrays else "tensors"
    lim = limits()
    try:
        with zipfile.ZipFile(path) as zf:
            pkl, records, order = _layout(zf, members, name)
            from .pickle_scan import PICKLE_BYTES

            if pkl.file_size > PICKLE_BYTES:
                raise Refused(f"has a {pkl.file_size / (1 << 20):.1f} MiB pickle (data.pkl), over the limit of "
                              f"{PICKLE_BYTES >> 20} MiB (a real checkpoint's is a few KB: its tensors are stored beside it)")
            obj, ctx = unpickle(zf.read(pkl), {k: m.file_size for k, m in records.items()}, numpy_arrays)
            check_records(ctx, path.stat().st_size, lim.decode_bytes, lim.agent_params)
            return _materialize(obj, zf, records, order)
    except Refused as e:
        clause = str(e)
        if clause.startswith("holds the global"):
            raise AgentError(f"{name} {clause}, not only {what}; refused without running it.") from None
        raise AgentError(f"{name} {clause}; refused without building it.") from None
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, MemoryError) as e:
        if isinstance(e, AgentError):
            raise
        raise AgentError(f"{name} is not a readable PyTorch file ({_short(e)}).") from None


def read_state_dict(path, name: str | None = None) -> dict:
    """A file holding only a {name: tensor} mapping (HF's pytorch_model.bin), checked to be one."""
    import torch

    name = name or Path(path).name
    obj = read_pt(path, name)
    if not isinstance(obj, dict):
        raise AgentError(f"{name} holds a {type(obj).__name__}, not a state dict of named tensors.")
    for key, value in obj.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise AgentError(f"{name} holds {str(key)[:60]!r} -> {type(value).__name__}; a state dict maps names to tensors.")
    return obj
