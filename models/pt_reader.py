"""Reading a PyTorch `.pt` / `.bin` file (a pickle) without running any of it: `cli.py convert-agent` only.

The browser upload and `load_agent` keep refusing pickles; this reader exists so a user can turn their own
CORL `dt_checkpoint.pt` or HF `pytorch_model.bin` into config.json + model.safetensors once, on the command
line. It reads with `torch.load(weights_only=True)`: the unpickler builds tensors, dicts, lists and
primitives and nothing else. Only for CORL's checkpoint (`numpy_arrays=True`) does it also allow numpy's
array reconstruction (`_reconstruct`, `ndarray`, `dtype` and the float32 / float64 dtype classes), which
`torch.save` writes for CORL's numpy state mean and std; no other global, so a pickled function, class or
`os.system` reduce is refused before it runs. Before unpickling, the file must be torch.save's zip
format with stored (uncompressed) members, within limits().decode_bytes: the legacy format reads storages
of the sizes the file declares, and a compressed member could declare little and inflate to much.
"""
from __future__ import annotations

import pickle
import re
import zipfile
from pathlib import Path

from trajectories.limits import ENV, human_bytes, limits

from .errors import AgentError


def _numpy_globals() -> list:
    """numpy's array reconstruction globals, under the names numpy 2 (numpy._core) and numpy 1
    (numpy.core) write them; the float dtype classes where numpy has them (>= 1.25)."""
    import numpy as np

    core = getattr(np, "_core", None)
    multiarray = core.multiarray if core is not None else np.core.multiarray
    out = [multiarray._reconstruct, np.ndarray, np.dtype]
    if core is not None:   # a file written under numpy 1.x names numpy.core.multiarray._reconstruct
        out.append((multiarray._reconstruct, "numpy.core.multiarray._reconstruct"))
    dtypes = getattr(np, "dtypes", None)
    if dtypes is not None:
        out += [dtypes.Float32DType, dtypes.Float64DType]
    return out


def _short(e: BaseException) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return (text if len(text) <= 160 else text[:157] + "...").rstrip(".")


def _refused_global(e: BaseException) -> str:
    """What torch's weights-only unpickler refused, as a short clause ("the global posix.system")."""
    text = " ".join(str(e).split())
    m = re.search(r"GLOBAL\s+([\w.]+)", text)
    if m:
        return f"the global {m.group(1).rstrip('.')[:80]}"
    m = re.search(r"got <class '([^']+)'", text)
    if m:
        return f"an object of type {m.group(1)[:80]}"
    return "an object that is not a tensor"


def _check_container(path: Path, name: str) -> None:
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


def read_pt(path, name: str | None = None, numpy_arrays: bool = False):
    """The object a torch.save file holds, read with weights_only=True (tensors, dicts, lists, primitives;
    with numpy_arrays also numpy float arrays). Tensors land on the CPU. Every failure is an AgentError
    with one sentence; nothing in the file runs."""
    import torch

    path = Path(path)
    name = name or path.name
    if not path.is_file():
        raise AgentError(f"{name} does not exist or is not a file.")
    _check_container(path, name)
    allowed = _numpy_globals() if numpy_arrays else []
    try:
        with torch.serialization.safe_globals(allowed):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        what = "tensors and numpy float arrays" if numpy_arrays else "tensors"
        raise AgentError(f"{name} holds {_refused_global(e)}, not only {what}; refused without running it.") from None
    except (RuntimeError, EOFError, ValueError, TypeError, AttributeError, KeyError, IndexError, OSError,
            zipfile.BadZipFile, MemoryError, RecursionError) as e:
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
