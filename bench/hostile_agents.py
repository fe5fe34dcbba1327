"""Hostile agent uploads, written by hand: configs that lie, safetensors headers that lie, zips that lie.

`hostile_agent_files(directory)` writes each as a .zip (the way a browser upload arrives) and returns
one dict per file: {"name", "path", "expect", "secret"}. `expect` is a lower-case fragment of the one
sentence `models.load_agent` must refuse the file with; for the one file seqlens accepts on purpose
(zip-huge-extra-member: an unused member is ignored, never extracted) it is a fragment of the note the
loaded agent carries in `agent.notes` instead (ACCEPTED lists those names). Every file is small (the
largest, the 2 GiB-declared member of zeros, is ~2 MB) and all of them are written in well under 3 s.
"""
from __future__ import annotations

import io
import json
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np

# files seqlens loads (with a note whose text contains `expect`) rather than refuses
ACCEPTED = {"zip-huge-extra-member"}

_S, _A, _H, _L, _M, _P = 3, 2, 8, 1, 20, 16   # HF toy: state_dim, act_dim, hidden, layers, max_ep_len, n_positions


# ---- building blocks ----------------------------------------------------------------------------------------
def _safetensors(tensors: dict[str, np.ndarray]) -> bytes:
    """A safetensors file written by hand (float32), so the headers can also be made to lie."""
    header, data, offset = {}, [], 0
    for key, arr in tensors.items():
        raw = np.ascontiguousarray(arr, np.float32).tobytes()
        header[key] = {"dtype": "F32", "shape": list(arr.shape), "data_offsets": [offset, offset + len(raw)]}
        data.append(raw)
        offset += len(raw)
    return _with_header(header, b"".join(data))


def _with_header(header: dict, data: bytes) -> bytes:
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + data


def _hf_config(**override) -> dict:
    cfg = {"model_type": "decision_transformer", "state_dim": _S, "act_dim": _A, "hidden_size": _H, "n_layer": _L,
           "n_head": 2, "max_ep_len": _M, "n_positions": _P, "n_inner": None, "activation_function": "relu",
           "resid_pdrop": 0.1, "layer_norm_epsilon": 1e-5, "action_tanh": True, "scale_attn_weights": True,
           "scale_attn_by_inverse_layer_idx": False, "architectures": ["DecisionTransformerModel"]}
    return {**cfg, **override}


def _hf_tensors() -> dict[str, np.ndarray]:
    """The tensors of a tiny DecisionTransformerModel.save_pretrained checkpoint (HF names and layouts)."""
    rng = np.random.default_rng(0)
    shapes = {"embed_timestep.weight": (_M, _H), "embed_return.weight": (_H, 1), "embed_return.bias": (_H,),
              "embed_state.weight": (_H, _S), "embed_state.bias": (_H,), "embed_action.weight": (_H, _A),
              "embed_action.bias": (_H,), "embed_ln.weight": (_H,), "embed_ln.bias": (_H,),
              "predict_state.weight": (_S, _H), "predict_state.bias": (_S,), "predict_return.weight": (1, _H),
              "predict_return.bias": (1,), "predict_action.0.weight": (_A, _H), "predict_action.0.bias": (_A,),
              "encoder.wpe.weight": (_P, _H), "encoder.ln_f.weight": (_H,), "encoder.ln_f.bias": (_H,)}
    for i in range(_L):
        h = f"encoder.h.{i}."
        shapes.update({h + "ln_1.weight": (_H,), h + "ln_1.bias": (_H,), h + "ln_2.weight": (_H,), h + "ln_2.bias": (_H,),
                       h + "attn.c_attn.weight": (_H, 3 * _H), h + "attn.c_attn.bias": (3 * _H,),
                       h + "attn.c_proj.weight": (_H, _H), h + "attn.c_proj.bias": (_H,),
                       h + "mlp.c_fc.weight": (_H, 4 * _H), h + "mlp.c_fc.bias": (4 * _H,),
                       h + "mlp.c_proj.weight": (4 * _H, _H), h + "mlp.c_proj.bias": (_H,)})
    return {k: rng.normal(0, 0.2, s).astype(np.float32) for k, s in shapes.items()}


def _native(kind: str = "mlp") -> tuple[dict, dict[str, np.ndarray]]:
    """A small valid seqlens agent (config dict, state as numpy) made with save_agent's own code."""
    from dataclasses import fields

    from models.base import AgentConfig
    from models.checkpoint import FORMAT, build_agent
    from models.hparams import HPARAMS

    small = {"hidden": 8, "n_layer": 1, "n_head": 2}   # the family's hparams (the registry) say which apply
    base = dict(kind=kind, obs_dim=4, act_dim=1, discrete=True, n_actions=2, context_length=4, max_ep_len=50,
                env_id="CartPole-v1", hparams={f.name: small[f.name] for f in fields(HPARAMS[kind]) if f.name in small})
    agent = build_agent(AgentConfig(**base))
    state = {k: v.detach().numpy().copy() for k, v in agent.state_dict().items()}
    return {"format": FORMAT, **agent.config.to_dict()}, state


def _zip(path: Path, files: dict[str, bytes], folder: str = "agent") -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(f"{folder}/{name}", data)
    return path


def _raw_zip(path: Path, members: list[tuple[str, bytes, int, int, int]], repeat_last: int = 0) -> Path:
    """A zip written by hand: members (name, stored bytes, method, crc, uncompressed size); the last member's
    central-directory entry is repeated `repeat_last` more times (all pointing at one local header)."""
    out, central = io.BytesIO(), []
    for name, data, method, crc, usize in members:
        n = name.encode()
        offset = out.tell()
        out.write(struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, method, 0, 0x21, crc, len(data), usize, len(n), 0) + n)
        out.write(data)
        central.append(struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, method, 0, 0x21, crc, len(data), usize,
                                   len(n), 0, 0, 0, 0, 0, offset) + n)
    central += [central[-1]] * repeat_last
    start = out.tell()
    cd = b"".join(central)
    out.write(cd)
    out.write(struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(central), len(central), len(cd), start, 0))
    path.write_bytes(out.getvalue())
    return path


def _stored(name: str, data: bytes) -> tuple[str, bytes, int, int, int]:
    return name, data, 0, zlib.crc32(data), len(data)


def _zeros_member(name: str, chunk: int = 16 << 20, copies: int = 128) -> tuple[str, bytes, int, int, int]:
    """A deflated member of chunk * copies zero bytes (2 GiB by default) in ~2 MB, made without compressing
    2 GiB: one fully flushed deflate segment of `chunk` zeros decodes on its own, so it is repeated."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    seg = c.compress(bytes(chunk)) + c.flush(zlib.Z_FULL_FLUSH)
    crc, n = zlib.crc32(bytes(chunk)), chunk   # crc of 2^k copies by doubling (copies is a power of two)
    while n < chunk * copies:
        crc, n = _crc32_combine(crc, crc, n), 2 * n
    return name, seg * copies + b"\x03\x00", 8, crc, chunk * copies   # \x03\x00: an empty final block


def _crc32_combine(crc1: int, crc2: int, len2: int) -> int:
    """zlib's crc32_combine: the CRC of A + B from crc(A), crc(B) and len(B)."""
    def times(mat, vec):
        s, i = 0, 0
        while vec:
            if vec & 1:
                s ^= mat[i]
            vec, i = vec >> 1, i + 1
        return s

    def square(mat):
        return [times(mat, mat[n]) for n in range(32)]

    odd = [0xEDB88320] + [1 << n for n in range(31)]
    even = square(odd)
    odd = square(even)
    while True:
        even = square(odd)
        if len2 & 1:
            crc1 = times(even, crc1)
        len2 >>= 1
        if not len2:
            break
        odd = square(even)
        if len2 & 1:
            crc1 = times(odd, crc1)
        len2 >>= 1
        if not len2:
            break
    return crc1 ^ crc2


# ---- the files ------------------------------------------------------------------------------------------------
def hostile_agent_files(directory) -> list[dict]:
    """Writes every hostile agent into `directory` (created if needed); one dict per file."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    out = []

    def add(name: str, expect: str, files: dict[str, bytes] | None = None, path: Path | None = None):
        path = path or _zip(directory / f"{name}.zip", files)
        out.append({"name": name, "path": path, "expect": expect, "secret": None})

    hf_weights = _safetensors(_hf_tensors())

    def hf(**override):
        return {"config.json": json.dumps(_hf_config(**override)).encode(), "model.safetensors": hf_weights}

    # (4) Hugging Face configs that lie: each used to be turned into a model before anything was checked
    add("hf-hidden-200000", "agent_params", hf(hidden_size=200000))
    add("hf-n-head-0", "'n_head' must be at least 1", hf(n_head=0))
    add("hf-state-dim-null", "'state_dim' must be an integer", hf(state_dim=None))
    add("hf-n-layer-list", "'n_layer' must be an integer", hf(n_layer=[1]))

    # native seqlens configs, the same four lies (a DT, so n_head is read)
    cfg, state = _native("dt")
    weights = _safetensors(state)

    def native(**override):
        c = json.loads(json.dumps(cfg))
        for key, value in override.items():
            if key.startswith("hparams."):
                c["hparams"][key.split(".", 1)[1]] = value
            else:
                c[key] = value
        return {"config.json": json.dumps(c).encode(), "model.safetensors": weights}

    add("native-hidden-200000", "agent_params", native(**{"hparams.hidden": 200000, "hparams.n_inner": None}))
    add("native-n-head-0", "'hparams.n_head' must be at least 1", native(**{"hparams.n_head": 0}))
    add("native-obs-dim-null", "'obs_dim' must be an integer", native(obs_dim=None))
    add("native-n-layer-list", "'hparams.n_layer' must be an integer", native(**{"hparams.n_layer": [1]}))
    add("native-n-actions-1e12", "over the limit of 4096 (actions", native(n_actions=10**12))
    add("native-rtg-scale-nan", "'rtg_scale' must be a finite number", {
        "config.json": json.dumps(cfg).replace('"rtg_scale": 1.0', '"rtg_scale": NaN').encode(),
        "model.safetensors": weights})
    add("native-evaluation-strings", "evaluation.results", native(
        evaluation={"results": [{"target_return": "x", "mean_return": "1", "ci_low": 0, "ci_high": 1, "episodes": 1}]}))

    # safetensors headers that lie
    small_cfg, small_state = _native("mlp")
    cfg_bytes = json.dumps(small_cfg).encode()
    real = {k: np.ascontiguousarray(v, np.float32) for k, v in small_state.items()}
    header = {}
    offset = 0
    for key, arr in real.items():
        header[key] = {"dtype": "F32", "shape": list(arr.shape), "data_offsets": [offset, offset + arr.nbytes]}
        offset += arr.nbytes
    data = b"".join(a.tobytes() for a in real.values())
    giant = dict(header)
    first = next(iter(giant))
    giant[first] = {"dtype": "F32", "shape": [1 << 20, 1 << 20], "data_offsets": [0, 4 << 40]}   # 4 TiB
    add("header-giant-tensor", "holds only", {"config.json": cfg_bytes, "model.safetensors": _with_header(giant, data)})
    add("header-length-2^60", "header claims", {"config.json": cfg_bytes,
                                                "model.safetensors": struct.pack("<Q", 1 << 60) + b"{}" + data})
    add("header-past-file-end", "header claims", {"config.json": cfg_bytes,
                                                  "model.safetensors": struct.pack("<Q", 1 << 20) + b"{}" + data})

    # (7) environment ids
    def env(env_id, **override):
        c = {**small_cfg, "env_id": env_id, **override}
        return {"config.json": json.dumps(c).encode(), "model.safetensors": _safetensors(small_state)}

    add("env-id-module-part", "names a module to import", env("this:CartPole-v1"))
    add("env-id-unregistered", "is not registered", env("NoSuchEnv-v0"))
    from models.base import AgentConfig
    from models.checkpoint import build_agent

    c3 = {**small_cfg, "obs_dim": 3}   # an agent for 3 features, on CartPole (4)
    s3 = {k: v.detach().numpy().copy() for k, v in
          build_agent(AgentConfig(**{k: v for k, v in c3.items() if k != "format"})).state_dict().items()}
    add("env-spaces-mismatch", "observations of shape (4,)", {"config.json": json.dumps(c3).encode(),
                                                               "model.safetensors": _safetensors(s3)})

    # zips that lie: 50 001 directory entries (all naming one empty member), and an unused 2 GiB member
    n_entries = 50_001
    add("zip-too-many-entries", "zip_entries", path=_raw_zip(
        directory / "zip-too-many-entries.zip",
        [_stored("agent/config.json", cfg_bytes), _stored("agent/model.safetensors", _safetensors(small_state)),
         _stored("x", b"")], repeat_last=n_entries))
    add("zip-huge-extra-member", "ignored 1 zip member", path=_raw_zip(
        directory / "zip-huge-extra-member.zip",
        [_stored("agent/config.json", cfg_bytes), _stored("agent/model.safetensors", _safetensors(small_state)),
         _zeros_member("agent/zeros.bin")]))
    return out
