"""Read and check a safetensors file's header without reading (or mapping) any tensor data.

The format: 8 bytes little-endian header length n, then n bytes of JSON {name: {"dtype", "shape",
"data_offsets": [begin, end]}, "__metadata__": {str: str}}, then the data (offsets are relative to its
start). Every declared size is checked against the file and trajectories/limits.py before a loader
allocates anything.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

from trajectories.limits import ENV, human_bytes, limits

from .errors import AgentError

MAX_HEADER_BYTES = 8 << 20   # real headers are a few hundred bytes per tensor
DTYPE_BYTES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
               "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8}


@dataclass(frozen=True)
class TensorInfo:
    dtype: str
    shape: tuple[int, ...]
    nbytes: int


def read_header(path, where: str) -> dict[str, TensorInfo]:
    """{tensor name: TensorInfo} of a safetensors file; `where` names it in messages ("agent.zip: model.safetensors").

    Raises AgentError with one sentence for any header that is not what a loader can trust.
    """
    path = Path(path)
    bad = f"{where} is not a valid safetensors file"
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise AgentError(f"{bad} (it is {size} bytes long, shorter than the 8-byte header length).")
            n = int.from_bytes(head, "little")
            if n > MAX_HEADER_BYTES:
                raise AgentError(f"{bad} (its header claims {n} bytes, over the {human_bytes(MAX_HEADER_BYTES)} a header may have).")
            if 8 + n > size:
                raise AgentError(f"{bad} (its header claims {n} bytes but the file is only {size} bytes long).")
            text = f.read(n)
    except OSError as e:
        raise AgentError(f"{where} cannot be read ({e.strerror or e}).") from None
    try:
        header = json.loads(text.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise AgentError(f"{bad} (its header is not valid JSON).") from None
    if not isinstance(header, dict):
        raise AgentError(f"{bad} (its header is not a JSON object).")
    data_bytes = size - 8 - n
    meta = header.pop("__metadata__", None)
    if meta is not None and not (isinstance(meta, dict) and all(isinstance(v, str) for v in meta.values())):
        raise AgentError(f"{bad} (its __metadata__ must map strings to strings).")
    out: dict[str, TensorInfo] = {}
    total = 0
    cap = limits().decode_bytes
    for key, entry in header.items():
        label = key if len(key) <= 60 else key[:57] + "..."
        if not isinstance(entry, dict):
            raise AgentError(f"{bad} (the entry for tensor '{label}' is not a JSON object).")
        dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
        if not isinstance(dtype, str) or dtype not in DTYPE_BYTES:
            raise AgentError(f"{bad} (tensor '{label}' has dtype {str(dtype)[:20]!r}; expected one of {', '.join(DTYPE_BYTES)}).")
        if not isinstance(shape, list) or len(shape) > 16 or not all(_uint(d) for d in shape):
            raise AgentError(f"{bad} (tensor '{label}' has shape {str(shape)[:40]}; expected a list of non-negative integers).")
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(_uint(o) for o in offsets) and offsets[0] <= offsets[1]):
            raise AgentError(f"{bad} (tensor '{label}' has data_offsets {str(offsets)[:40]}; expected [begin, end] byte offsets).")
        if any(d > cap for d in shape):
            raise AgentError(f"{bad} (tensor '{label}' has shape {str(shape)[:60]}, with a dimension over the "
                             f"{cap} the decode_bytes limit allows).")
        nbytes = math.prod(shape) * DTYPE_BYTES[dtype]
        if offsets[1] > data_bytes:
            raise AgentError(f"{bad} (tensor '{label}' claims bytes {offsets[0]}..{offsets[1]} but the file holds "
                             f"only {data_bytes} bytes of data).")
        if offsets[1] - offsets[0] != nbytes:
            raise AgentError(f"{bad} (tensor '{label}' of shape {tuple(shape)} {dtype} needs {nbytes} bytes but its "
                             f"data_offsets give {offsets[1] - offsets[0]}).")
        total += nbytes
        if total > cap:
            raise AgentError(f"{where} declares more than {human_bytes(cap)} of tensors, over the limit "
                             f"(decode_bytes, set by {ENV['decode_bytes']}).")
        out[key] = TensorInfo(dtype, tuple(shape), nbytes)
    return out


def _uint(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0
