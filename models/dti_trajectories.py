"""DTI's trajectory files (`cli.py convert --from dti-trajectories FILE --out OUT.npz`, command line only).

DecisionTransformerInterpretability's `TrajectoryWriter.write` pickles {"data": {observations, actions, rewards,
dones, truncated, rtgs, infos}, "metadata": {"args", "time"}}, plain or through gzip / lzma (.gz / .xz). Every array
is laid out [time, env, ...] (observations float64, actions int64, rewards float64, dones / truncated bool; `infos`
an object array of the vector env's info dicts). `args` is the union of its run / environment / online configs: a
dict holding gymnasium spaces (action_space, observation_space), or a JSON string.

Nothing here calls `pickle.load` on the file's globals. Steps, each before what the file controls is built:
1. **Decompress with a bound**: gzip / xz / plain told by the magic bytes; the decompressed size is checked against
   limits().decode_bytes as it streams (a bomb stops at the limit, never inflates whole).
2. **Opcodes**: at most MAX_OPCODES; memo indices no larger than the opcode count; byte lengths within the data
   (pickletools reads each one); tuples nested at most 64 deep (pickle_scan.TupleDepths: a deeper one crashes
   CPython's hash); GLOBALs on the allow-list; no persistent ids, INST / OBJ, EXT*, text ints.
3. **Inert unpickling**: `find_class` returns stand-ins of ours (models/pickle_scan.py's and those below); no numpy,
   gymnasium or builtin callable is ever called. Numpy arrays come back as `_Array` (dtype code, shape, the bytes the
   pickle holds, numel x itemsize checked equal to their length). Object arrays (`infos`) keep only a "dropped"
   mark: their items are never made into arrays and are not read. Gymnasium spaces, numpy random generators and
   numpy scalars in `args` / `infos` become `_Dropped`, which absorbs its arguments and state and is never read.
4. **Shapes and limits** (steps, observation values) checked, then the arrays are viewed with np.frombuffer and
   split into episodes as DTI's TrajectoryDataset does.
"""
from __future__ import annotations

import gzip
import io
import json
import lzma
import math
import pickle
import pickletools
import re
import zlib
from pathlib import Path

import numpy as np

from trajectories.dataset import Dataset
from trajectories.errors import DatasetError
from trajectories.limits import human_bytes, limits

from .pickle_scan import (ALLOWED_OPCODES, Refused, TupleDepths, _Call, _DtypeRef, _Inert, _OrderedDict, _short,
                          array_shape, array_state, check_array_bytes, dtype_byteorder, py3_name)

MAX_OPCODES = 4_000_000   # a step costs ~3 opcodes (its empty info dict) plus ~100 per episode end; 4M opcodes of
                          # empty containers cost ~0.4 GB of Python objects, the most a hostile file can make us hold
ARGS_CHARS = 1 << 20       # metadata["args"] as JSON: a few KB in DTI's files
CHUNK = 1 << 20
CHECK_VALUES = 1 << 22     # observation values checked per block
FORMAT = "dti-trajectories"

# + what Python 3's pickle writes for these files beyond torch.save's set: NEWOBJ (gymnasium spaces in args, built
# as _Dropped), sets (gymnasium's Text space), BYTEARRAY8 (protocol 5 numpy buffers; its length is checked by the
# scan below before the C unpickler sizes anything). No persistent ids: DTI's files hold none.
OPCODES = (ALLOWED_OPCODES - {"BINPERSID"}) | {"NEWOBJ", "EMPTY_SET", "ADDITEMS", "FROZENSET", "BYTEARRAY8"}

# dtype codes read as data (DTI writes f8 / i8 / b1); 'O8' only as a dropped object array
NUMERIC = {f"{k}{n}" for k, sizes in (("f", (2, 4, 8)), ("i", (1, 2, 4, 8)), ("u", (1, 2, 4, 8))) for n in sizes} | {"b1"}
_OBJECT = "O8"
_TEXT_CODE = re.compile(r"[US]\d{1,6}")

# what args / infos may hold besides plain values: absorbed, never built or read
DROPPED = tuple(f"{pkg}.spaces.{mod}.{cls}" for pkg in ("gymnasium", "gym") for mod, cls in (
    ("discrete", "Discrete"), ("box", "Box"), ("dict", "Dict"), ("text", "Text"), ("tuple", "Tuple"),
    ("multi_discrete", "MultiDiscrete"), ("multi_binary", "MultiBinary"), ("sequence", "Sequence"),
    ("graph", "Graph"))) + tuple(f"numpy.random.{n}" for n in (
    "_pickle.__generator_ctor", "_pickle.__bit_generator_ctor", "_pickle.__randomstate_ctor", "_generator.Generator",
    "_pcg64.PCG64", "_pcg64.PCG64DXSM", "_mt19937.MT19937", "_philox.Philox", "_sfc64.SFC64", "mtrand.RandomState",
    "bit_generator.SeedSequence", "bit_generator.__pyx_unpickle_SeedSequence"))
_NUMPY = ("numpy._core", "numpy.core")
# MiniGrid's MissionSpace (in the observation_space DTI's EnvironmentConfig keeps) pickles its mission function by
# name (minigrid.envs.memory.MemoryEnv._gen_mission, or one of DTI's own envs): such names become _Dropped, and
# nothing of them is imported
_DROPPED_NAME = re.compile(r"(minigrid|src\.environments)(\.[A-Za-z_]\w{0,63}){1,6}")


class _Dropped:
    """A gymnasium space, random generator or numpy scalar: takes any arguments and state, keeps none, calls nothing."""
    __slots__ = ()

    def __new__(cls, *args, **kwargs):
        return object.__new__(cls)

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        pass

    def __reduce__(self):
        raise TypeError("inert stand-in")


class _DtypeCode(_DtypeRef):
    __slots__ = ()

    def order(self, state) -> str:
        if _TEXT_CODE.fullmatch(self.code):   # a gymnasium Text space's dtype, or a str array: dropped, never read
            return "|"
        return dtype_byteorder(state, 63 if self.code == _OBJECT else 0, "plain numbers")

    def numpy(self) -> np.dtype:
        order = {"<": "<", ">": ">"}.get(self.byteorder or "", "=")
        return np.dtype(order + self.code)


class _Array(_Inert):
    """A numpy array as the pickle states it: dtype, shape and raw bytes, checked to agree; nothing allocated."""
    __slots__ = ("shape", "dtype", "fortran", "raw", "dropped")

    def __init__(self):
        super().__init__("a numpy array")
        self.shape = self.dtype = self.fortran = self.raw = None
        self.dropped = False

    def fill(self, shape, dtype, fortran, raw):
        if self.raw is not None or self.dropped:
            raise Refused("sets a numpy array's state twice")
        if not isinstance(dtype, _DtypeCode) or (dtype.byteorder is None and dtype.code != _OBJECT):
            raise Refused("holds a numpy array without a plain dtype")
        shape = array_shape(shape, fortran)
        if dtype.code == _OBJECT:
            if not isinstance(raw, list):
                raise Refused("holds an object array whose items are not a list")
            self.shape, self.dtype, self.dropped = shape, dtype, True   # infos: never read
            return self
        if _TEXT_CODE.fullmatch(dtype.code):
            self.shape, self.dtype, self.dropped = shape, dtype, True
            return self
        if not isinstance(raw, (bytes, bytearray)):
            raise Refused(f"holds a numpy array whose data is a {type(raw).__name__}, not bytes")
        check_array_bytes(shape, int(dtype.code[1:]), raw)
        self.shape, self.dtype, self.fortran, self.raw = shape, dtype, fortran, raw
        return self

    def __setstate__(self, state):
        self.fill(*array_state(state))

    def numpy(self) -> np.ndarray:
        """A read-only view of the pickle's bytes (no copy)."""
        arr = np.frombuffer(self.raw, dtype=self.dtype.numpy())
        return arr.reshape(self.shape, order="F" if self.fortran else "C")


def _globals() -> dict:
    ndarray = _Inert("numpy.ndarray")

    def reconstruct(cls, shape, typecode, *extra):
        if extra or cls is not ndarray or shape != (0,) or typecode not in (b"b", "b"):
            raise Refused("calls numpy's _reconstruct with arguments numpy's own pickling never writes")
        return _Array()

    def dtype(code, align=False, copy=True, *extra):
        if extra or not isinstance(code, str) or align is not False or copy is not True:
            raise Refused("builds a numpy dtype with arguments numpy's own pickling never writes")
        if code not in NUMERIC and code != _OBJECT and not _TEXT_CODE.fullmatch(code):
            raise Refused(f"holds a numpy dtype {code[:12]!r}; only numbers, booleans, and text or object arrays "
                          "(dropped) are read")
        return _DtypeCode(code)

    def frombuffer(buf, dtype, shape, order, *extra):   # protocol 5: numpy's in-band buffers
        if extra or order not in ("C", "F"):
            raise Refused("calls numpy's _frombuffer with arguments numpy's own pickling never writes")
        return _Array().fill(shape, dtype, order == "F", buf)   # BYTEARRAY8's length was checked by the scan

    def encode(text, encoding="utf-8", *extra):
        if extra or not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
            raise Refused("calls _codecs.encode other than as numpy's array pickling does (a str, latin1)")
        return text.encode("latin1")

    def empty_bytes(*args):   # protocol 2 writes b"" (an empty array's data) as bytes()
        if args:
            raise Refused("calls bytes() with arguments (protocol 2 writes only an empty bytes() so)")
        return b""

    def collection(kind):   # protocol 2 writes sets (a gymnasium Text space's characters) as set(list)
        def build(*args):
            if len(args) > 1 or args and not isinstance(args[0], list):
                raise Refused(f"calls {kind.__name__}() with something other than a list")
            try:
                return kind(*args)
            except TypeError:
                raise Refused(f"builds a {kind.__name__} of unhashable items") from None
        return _Call(f"builtins.{kind.__name__}", build)

    out = {"collections.OrderedDict": _OrderedDict,
           "builtins.set": collection(set), "builtins.frozenset": collection(frozenset), "_codecs.encode": _Call("_codecs.encode", encode),
           "builtins.bytes": _Call("builtins.bytes", empty_bytes),
           **{name: _Dropped for name in DROPPED}}
    for pkg in _NUMPY:
        out.update({f"{pkg}.multiarray._reconstruct": _Call("numpy's _reconstruct", reconstruct),
                    f"{pkg}.numeric._frombuffer": _Call("numpy's _frombuffer", frombuffer),
                    f"{pkg}.multiarray.scalar": _Dropped})
    out.update({"numpy.ndarray": ndarray, "numpy.dtype": _Call("numpy.dtype", dtype)})
    return out


def _lookup(key: str, table: dict):
    if key in table:
        return table[key]
    if _DROPPED_NAME.fullmatch(key):
        return _Dropped
    raise Refused(f"holds the global {key[:120]}")


class _Unpickler(pickle.Unpickler):
    def __init__(self, file, table: dict):
        super().__init__(file)
        self._table = table

    def find_class(self, module, name):
        return _lookup(py3_name(str(module), str(name)), self._table)

    def persistent_load(self, pid):
        raise Refused("holds a persistent id (DTI's files hold none)")


def scan(data, table: dict) -> int:
    """Walk the opcodes without building anything; returns their count. Raises Refused."""
    count = 0
    depths = TupleDepths()
    try:
        for op, arg, _pos in pickletools.genops(io.BytesIO(data)):
            count += 1
            if count > MAX_OPCODES:
                raise Refused(f"has a pickle of more than {MAX_OPCODES:,} opcodes")
            if op.name not in OPCODES:
                raise Refused(f"uses the pickle opcode {op.name}, which DTI's trajectory files do not hold")
            if op.name in ("BINPUT", "LONG_BINPUT", "BINGET", "LONG_BINGET") and arg > count:
                raise Refused(f"uses memo index {arg:,} after {count:,} opcodes")
            if op.name == "PROTO" and not 2 <= arg <= 5:
                raise Refused(f"is a pickle of protocol {arg}, not 2 to 5")
            if op.name == "GLOBAL":
                module, _, name = str(arg).partition(" ")
                _lookup(py3_name(module, name), table)
            depths.step(op, arg)
    except Refused:
        raise
    except (ValueError, EOFError, UnicodeDecodeError, OverflowError, MemoryError) as e:
        raise Refused(f"is a damaged or truncated pickle ({_short(e)})") from None
    if count == 0:
        raise Refused("is an empty pickle")
    return count


def _decompressed(path: Path, cap: int) -> bytes:
    """The file's pickle bytes, stopping as soon as they pass `cap`. Raises Refused."""
    with open(path, "rb") as f:
        head = f.read(6)
    if head[:2] == b"\x1f\x8b":
        opener, kind = gzip.open, "gzip"
    elif head == b"\xfd7zXZ\x00":
        opener, kind = lzma.open, "xz"
    elif head[:1] == b"\x80":
        opener, kind = open, "plain"
    else:
        raise Refused("is not a DTI trajectory file (expected a pickle, plain or compressed with gzip or xz)")
    buf = bytearray()
    try:
        with opener(path, "rb") as f:
            while chunk := f.read(CHUNK):
                buf += chunk
                if len(buf) > cap:
                    raise Refused(f"decompresses to more than {human_bytes(cap)}, the limit of decode_bytes "
                                  "(SEQLENS_MAX_DECODE_BYTES)")
    except Refused:
        raise
    except (EOFError, OSError, lzma.LZMAError, zlib.error) as e:
        raise Refused(f"is a damaged or truncated {kind} stream ({_short(e)})") from None
    return bytes(buf)   # BytesIO shares a bytes object's buffer (a bytearray it would copy, once per pass)


def unpickle(data) -> object:
    table = _globals()
    scan(data, table)
    try:
        return _Unpickler(io.BytesIO(data), table).load()
    except Refused:
        raise
    except RecursionError:
        raise Refused("has a pickle nested too deeply") from None
    except Exception as e:  # noqa: BLE001 - whatever the C unpickler says about a malformed stream: one clause
        raise Refused(f"is a damaged pickle ({_short(e)})") from None


# ---- the layout DTI writes ----------------------------------------------------------------------------------
def _field(data: dict, key: str, kinds: str, ndim: int | None = None) -> _Array:
    arr = data.get(key)
    if not isinstance(arr, _Array) or arr.dropped:
        raise Refused(f"has no numeric array data[{key!r}] (DTI's TrajectoryWriter writes one)")
    if arr.dtype.code[0] not in kinds:
        raise Refused(f"has data[{key!r}] of dtype {arr.dtype.code}, not {'/'.join(kinds)}")
    if ndim is not None and len(arr.shape) != ndim:
        raise Refused(f"has data[{key!r}] of shape {arr.shape}; DTI writes [time, env]")
    return arr


def _layout(obj) -> tuple[dict, dict]:
    if not (isinstance(obj, dict) and isinstance(obj.get("data"), dict)):
        raise Refused("does not hold {'data': {...}, 'metadata': {...}} as DTI's TrajectoryWriter writes")
    meta = obj.get("metadata")
    return obj["data"], meta if isinstance(meta, dict) else {}


def _args(meta: dict) -> dict:
    """metadata['args'] as plain JSON values (dict, or DTI's JSON string); spaces and other stand-ins left out."""
    args = meta.get("args")
    if isinstance(args, str):
        if len(args) > ARGS_CHARS:
            return {}
        try:
            args = json.loads(args)
        except (ValueError, RecursionError):
            return {}
    if not isinstance(args, dict):
        return {}
    return {k[:100]: v if not isinstance(v, str) else v[:1000] for k, v in list(args.items())[:500]
            if isinstance(k, str) and isinstance(v, (str, int, float, bool, type(None))) and not (isinstance(v, float) and not math.isfinite(v))}


def _env_id(args: dict) -> tuple[str | None, str | None]:
    """(env_id, note): args' env_id where it is an id seqlens makes, else None and why."""
    env_id = args.get("env_id")
    if not isinstance(env_id, str) or not env_id:
        return None, "metadata names no env_id"
    import envs

    try:
        return envs.check_env_id(env_id), None
    except ValueError as e:
        return None, str(e)


def _action_count(env_id: str | None, actions: np.ndarray) -> int | None:
    """The env's action count where seqlens knows it (MiniGrid: 7) and every action fits; else None (max + 1):
    a short file need not use the last action."""
    import envs

    labels = envs.ACTION_LABELS.get(env_id or "")
    if labels and actions.size and 0 <= actions.min() and actions.max() < len(labels):
        return len(labels)
    return None


def _observations(obs: np.ndarray, name: str) -> np.ndarray:
    """[time, env, ...] -> [env * time, ...] (env-major, as DTI's "(b t)"); uint8 where every value is a whole
    number in 0..255 (DTI writes MiniGrid's grid codes as float64), float32 otherwise."""
    moved = np.moveaxis(obs, 1, 0)
    codes = True
    rows = max(1, CHECK_VALUES // max(1, obs[0].size))   # a block of time steps at a time: no full-size temporaries
    for i in range(0, obs.shape[0], rows):
        block = obs[i:i + rows]
        if block.dtype.kind == "f":
            if not np.isfinite(block).all():
                raise DatasetError(f"{name}: observations hold NaN or inf (from time step {i}).")
            codes = codes and bool(((block >= 0) & (block <= 255) & (np.mod(block, 1) == 0)).all())
        elif block.dtype.kind in "iu":
            codes = codes and bool(block.min() >= 0 and block.max() <= 255)
    out = np.ascontiguousarray(moved, dtype=np.uint8 if codes else np.float32)
    return out.reshape(-1, *obs.shape[2:])


def to_dataset(obj, name: str) -> Dataset:
    data, meta = _layout(obj)
    obs_ref = _field(data, "observations", "fiub")
    if len(obs_ref.shape) < 3 or len(obs_ref.shape) > 5:
        raise Refused(f"has observations of shape {obs_ref.shape}; DTI writes [time, env, H, W, C] (or [time, env, "
                      "features])")
    steps, n_envs = obs_ref.shape[:2]
    act_ref, rew_ref = _field(data, "actions", "iu", 2), _field(data, "rewards", "fiu", 2)
    done_ref, trunc_ref = _field(data, "dones", "b", 2), _field(data, "truncated", "b", 2)
    for key, ref in (("actions", act_ref), ("rewards", rew_ref), ("dones", done_ref), ("truncated", trunc_ref)):
        if ref.shape != (steps, n_envs):
            raise Refused(f"has data[{key!r}] of shape {ref.shape} but observations of [time, env] = ({steps}, {n_envs})")
    lim = limits()
    if steps * n_envs > lim.transitions:
        raise Refused(f"declares {steps:,} x {n_envs:,} = {steps * n_envs:,} steps; the limit is {lim.transitions:,} "
                      "steps per dataset (SEQLENS_MAX_TRANSITIONS)")
    per_step = math.prod(obs_ref.shape[2:])
    if per_step > (lim.obs_values if len(obs_ref.shape) > 3 else lim.features):
        raise Refused(f"declares observations of {per_step:,} values each, over the limit (SEQLENS_MAX_OBS_VALUES / "
                      "SEQLENS_MAX_FEATURES)")
    if steps * n_envs == 0:
        raise Refused("holds no steps")

    obs = _observations(obs_ref.numpy(), name)
    flat = lambda ref: np.moveaxis(ref.numpy(), 1, 0).reshape(-1)   # noqa: E731 - env-major, as DTI's "(b t)"
    actions, rewards = flat(act_ref).astype(np.int64), flat(rew_ref).astype(np.float32)
    dones, truncated = flat(done_ref), flat(trunc_ref)
    ends = dones | truncated
    # DTI splits the "(b t)" sequence only where done or truncated; its writer tags every env's last step truncated
    # first (tag_terminated_trajectories). Where a file lacks that tag, an env's last step still ends its episode
    # here (marked truncated: the data ran out), so no episode runs from one env into the next.
    last = np.zeros_like(ends)
    last[steps - 1::steps] = True
    truncated = (truncated | (last & ~ends)) & ~dones
    starts = np.concatenate([[0], np.flatnonzero(ends | last)[:-1] + 1]).astype(np.int64)

    args = _args(meta)
    env_id, note = _env_id(args)
    time = meta.get("time")
    metadata = {"format": FORMAT, "dti_args": args, "dti_layout": {"time": steps, "envs": n_envs},
                "dropped": "infos (object array) and the args' spaces were not read; rtgs are recomputed from rewards"}
    if isinstance(time, (int, float)) and not isinstance(time, bool) and math.isfinite(time):
        metadata["dti_time"] = float(time)
    if note:
        metadata["env_id_note"] = note[:300]
    return Dataset(observations=obs, actions=actions, rewards=rewards, terminated=dones, truncated=truncated,
                   episode_starts=starts, env_id=env_id, source=name, metadata=metadata,
                   n_actions=_action_count(env_id, actions))


def read_dti_trajectories(path, name: str | None = None) -> Dataset:
    """A DTI trajectory file (plain, .gz or .xz pickle) as a Dataset; any refusal is one DatasetError sentence."""
    path = Path(path)
    name = name or path.name
    if not path.is_file():
        raise DatasetError(f"{name} does not exist.")
    try:
        obj = unpickle(_decompressed(path, limits().decode_bytes))
        return to_dataset(obj, name)
    except Refused as e:
        clause = str(e)
        tail = "refused without running it" if clause.startswith("holds the global") else "refused without building it"
        raise DatasetError(f"{name} {clause}; {tail}.") from None
    except OSError as e:
        raise DatasetError(f"{name} could not be read ({_short(e)}).") from None
