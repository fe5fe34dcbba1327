"""Reading the pickle inside a torch.save zip (`data.pkl`) without letting it build anything we did not check.

`cli.py convert-agent` reads a user's CORL `dt_checkpoint.pt` or HF `pytorch_model.bin`. torch's weights-only
unpickler is not enough for a stranger's file: it allows `builtins.bytearray` (a 125 KB file can ask for 3 GiB),
numpy object arrays, meta and sparse tensors, `_rebuild_from_type_v2` (the file sets attributes on a tensor, e.g.
shadows `detach`) and stride-0 views (one float stored, 256 million declared). So nothing in torch rebuilds
anything here. Three steps, each before any allocation the file controls:

1. **Opcodes** (`scan_opcodes`): `data.pkl` at most PICKLE_BYTES, at most MAX_OPCODES opcodes, only the opcodes
   torch.save writes (protocol 2, plus the protocol-4 framing), memo indices no larger than the opcode count (the C
   unpickler would size its memo to a declared index), every GLOBAL on the allow-list below.
2. **Inert unpickling** (`unpickle`): a `pickle.Unpickler` whose `find_class` returns stand-ins of our own (no class
   or function of torch or numpy is ever called) and whose `persistent_load` turns each storage record into a
   `StorageRef` checked against the zip: the member `<archive>/data/<key>` exists, its byte size is exactly
   numel x the storage dtype's size. `_rebuild_tensor_v2` returns a `TensorRef` after checking its arguments: a
   storage of an allowed dtype, standard contiguous strides (no stride-0 or transposed views), offset + numel within
   the storage, no hooks, no metadata. BUILD (which sets attributes) reaches only our stand-ins, and only two accept
   it: OrderedDict's `_metadata` (dropped) and numpy's array / dtype state (checked: float32 / float64, byte size =
   shape). Every other stand-in refuses it.
3. **Records** (`check_records`): no two tensors share bytes of a storage (overlapping or aliased views would copy
   the same bytes into many weights), the referenced storages' bytes within the file's size and limits().decode_bytes,
   the tensors' elements within limits().agent_params. Only then models/pt_reader.py reads each storage's bytes from the
   zip once and makes numpy / torch arrays of the verified dtype and shape (bfloat16 becomes float32, exactly).

Allowed globals: `collections.OrderedDict`, `torch._utils._rebuild_tensor_v2`, `torch._utils._rebuild_parameter`,
the typed storage classes of STORAGE_DTYPES; with numpy_arrays (CORL) also numpy's `_reconstruct`, `ndarray`,
`dtype` and `_codecs.encode` (how protocol 2 writes the array's bytes). Nothing else.
"""
from __future__ import annotations

import io
import math
import pickle
import pickletools
import re
from dataclasses import dataclass, field

MIB = 1 << 20
PICKLE_BYTES = 16 * MIB      # data.pkl of a real checkpoint is a few KB (CORL's statistics add ~2 x 8 bytes per feature)
MAX_OPCODES = 200_000        # ~25 opcodes per tensor: 8,000 tensors (CORL's largest allowed config, 256 layers: ~100,000
                             # opcodes); 200,000 empty dicts or lists cost ~60 MB and 0.5 s to refuse
MAX_DEPTH = 32               # nesting of containers in the unpickled object (a state dict is 2 deep)
MAX_DIMS = 8                 # tensor / array dimensions
MAX_TUPLE_DEPTH = 64         # tuples in tuples (numpy's dtype state is 2 deep); see TupleDepths

# storage class -> (dtype name, bytes per element); the dtypes a weight file of these models holds
STORAGE_DTYPES = {
    "FloatStorage": ("float32", 4), "DoubleStorage": ("float64", 8), "HalfStorage": ("float16", 2),
    "BFloat16Storage": ("bfloat16", 2), "BoolStorage": ("bool", 1), "ByteStorage": ("uint8", 1),
    "CharStorage": ("int8", 1), "IntStorage": ("int32", 4), "LongStorage": ("int64", 8),
}
NUMPY_DTYPES = {"f4": "float32", "f8": "float64"}
_LOCATION = re.compile(r"(cpu|cuda(:\d{1,3})?|mps)")
_KEY = re.compile(r"\w{1,64}")

# what torch.save writes (protocol 2 by default; FRAME / MEMOIZE / SHORT_BINUNICODE / STACK_GLOBAL / BINBYTES*
# for a user's pickle_protocol up to 4). Not: INST / OBJ / NEWOBJ(_EX) (build instances of a class), EXT* (the
# copyreg registry), PERSID (text persistent ids), protocol-5 buffers (BYTEARRAY8 allocates its declared size
# before reading), text ints and floats (quadratic parsing), LONG4, sets.
ALLOWED_OPCODES = frozenset("""
PROTO FRAME STOP MARK POP POP_MARK DUP
BININT BININT1 BININT2 LONG1 BINFLOAT NONE NEWTRUE NEWFALSE
BINUNICODE SHORT_BINUNICODE BINUNICODE8 SHORT_BINBYTES BINBYTES BINBYTES8
EMPTY_TUPLE TUPLE TUPLE1 TUPLE2 TUPLE3 EMPTY_LIST APPEND APPENDS LIST EMPTY_DICT DICT SETITEM SETITEMS
BINPUT LONG_BINPUT MEMOIZE BINGET LONG_BINGET
GLOBAL STACK_GLOBAL REDUCE BUILD BINPERSID
""".split())

TORCH_GLOBALS = ("collections.OrderedDict", "torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_parameter",
                 *(f"torch.{s}" for s in STORAGE_DTYPES))
NUMPY_GLOBALS = ("numpy._core.multiarray._reconstruct", "numpy.core.multiarray._reconstruct", "numpy.ndarray",
                 "numpy.dtype", "_codecs.encode")


def py3_name(module: str, name: str) -> str:
    """module.name as Python 3 spells it: protocol 2 writes Python 2 names (`__builtin__ bytearray`), which the
    unpickler maps back (_compat_pickle, as pickle's fix_imports does)."""
    import _compat_pickle

    if (module, name) in _compat_pickle.NAME_MAPPING:
        module, name = _compat_pickle.NAME_MAPPING[(module, name)]
    elif module in _compat_pickle.IMPORT_MAPPING:
        module = _compat_pickle.IMPORT_MAPPING[module]
    return f"{module}.{name}"


class Refused(Exception):
    """Why the pickle is refused, as a clause that follows the file's name ("holds the global builtins.bytearray")."""


# ---- 1. opcodes ---------------------------------------------------------------------------------------------
class TupleDepths:
    """The unpickler's stack as tuple-nesting depths (scan_opcodes here, models/dti_trajectories.py's scan). Hashing
    a tuple recurses in C with no depth guard: 150,000 nested TUPLE1 used as a dict key (150 KB, within MAX_OPCODES)
    crash CPython 3.11 (segfault), so nesting is counted here, before anything is built. Only tuples nest this way (lists and dicts are unhashable; a frozenset keeps its items'
    hashes), and a tuple's depth is fixed when it is made."""

    def __init__(self):
        self.stack, self.marks, self.memo = [], [], {}

    def step(self, op, arg) -> None:
        name, stack = op.name, self.stack
        if name == "MARK":
            self.marks.append(len(stack))
            return
        if name in ("BINPUT", "LONG_BINPUT", "MEMOIZE"):
            if not stack:
                raise Refused("is a damaged pickle (stores an empty stack)")
            self.memo[len(self.memo) if name == "MEMOIZE" else arg] = stack[-1]
            return
        before = op.stack_before
        items = []
        if pickletools.markobject in before:
            if not self.marks:
                raise Refused("is a damaged pickle (a mark is missing)")
            m = self.marks.pop()
            items = stack[m:]
            del stack[m:]
            before = [b for b in before if b is not pickletools.markobject and b is not pickletools.stackslice]
        floor = self.marks[-1] if self.marks else 0
        if len(stack) - floor < len(before):
            raise Refused("is a damaged pickle (its stack runs out)")
        popped = stack[len(stack) - len(before):] if before else []
        del stack[len(stack) - len(popped):]
        if name == "TUPLE":
            out = [1 + max(items, default=0)]
        elif name in ("TUPLE1", "TUPLE2", "TUPLE3"):
            out = [1 + max(popped)]
        elif name == "EMPTY_TUPLE":
            out = [1]
        elif name == "DUP":
            out = popped * 2
        elif name in ("BINGET", "LONG_BINGET"):
            out = [self.memo.get(arg, 0)]
        else:   # containers, reductions, stand-ins: not tuples (our stand-ins never return one)
            out = [0] * len(op.stack_after)
        if out and max(out) > MAX_TUPLE_DEPTH:
            raise Refused(f"nests tuples more than {MAX_TUPLE_DEPTH} deep")
        stack += out


def scan_opcodes(data: bytes, allowed: frozenset[str]) -> int:
    """Walk data.pkl's opcodes without building anything; returns the opcode count. Raises Refused."""
    if len(data) > PICKLE_BYTES:
        raise Refused(f"has a {len(data) / MIB:.1f} MiB pickle (data.pkl), over the limit of {PICKLE_BYTES // MIB} MiB "
                      "(a real checkpoint's is a few KB: its tensors are stored beside it)")
    count = 0
    depths = TupleDepths()
    try:
        for op, arg, _pos in pickletools.genops(io.BytesIO(data)):
            count += 1
            if count > MAX_OPCODES:
                raise Refused(f"has a pickle of more than {MAX_OPCODES:,} opcodes (a real checkpoint's has ~25 per tensor)")
            if op.name not in ALLOWED_OPCODES:
                raise Refused(f"uses the pickle opcode {op.name}, which torch.save does not write")
            if op.name in ("BINPUT", "LONG_BINPUT") and arg > count:
                raise Refused(f"stores at memo index {arg:,} after {count:,} opcodes (torch.save numbers them in order)")
            if op.name in ("BINGET", "LONG_BINGET") and arg > count:
                raise Refused(f"reads memo index {arg:,} after {count:,} opcodes")
            if op.name == "GLOBAL":
                module, _, name = str(arg).partition(" ")
                if py3_name(module, name) not in allowed:
                    raise Refused(f"holds the global {py3_name(module, name)[:120]}")
            depths.step(op, arg)
    except Refused:
        raise
    except (ValueError, EOFError, UnicodeDecodeError, OverflowError, MemoryError) as e:
        raise Refused(f"has a damaged pickle ({_short(e)})") from None
    if count == 0:
        raise Refused("has an empty pickle")
    return count


# ---- 2. inert stand-ins -------------------------------------------------------------------------------------
class _Inert:
    """A stand-in the pickle may name but never change: BUILD (attribute setting) is refused."""
    __slots__ = ("what",)

    def __init__(self, what: str):
        self.what = what

    def __setstate__(self, state):
        raise Refused(f"sets attributes on {self.what} (only tensors, numbers, strings and containers are read)")

    def __reduce__(self):   # never pickled back out
        raise TypeError("inert stand-in")


class _Call(_Inert):
    """A stand-in for an allowed function: calls `fn` with the pickle's arguments (which checks them)."""
    __slots__ = ("fn",)

    def __init__(self, what: str, fn):
        super().__init__(what)
        self.fn = fn

    def __call__(self, *args, **kwargs):
        if kwargs:
            raise Refused(f"calls {self.what} with keyword arguments")
        return self.fn(*args)


class _OrderedDict(dict):
    """collections.OrderedDict as a plain dict; BUILD may only give it `_metadata` (a state dict's), dropped."""

    def __init__(self, *args, **kwargs):
        if args or kwargs:
            raise Refused("builds an OrderedDict from arguments (torch.save fills it item by item)")
        super().__init__()

    def __setstate__(self, state):
        if not (isinstance(state, dict) and set(state) <= {"_metadata"}):
            raise Refused("sets attributes other than _metadata on a state dict")

    def __reduce__(self):
        raise TypeError("inert stand-in")


@dataclass(frozen=True, eq=False)
class StorageRef:
    key: str
    dtype: str
    itemsize: int
    numel: int


@dataclass(frozen=True, eq=False)
class TensorRef:
    storage: StorageRef
    offset: int
    shape: tuple[int, ...]
    numel: int


def dtype_byteorder(state, flags: int, reads: str) -> str:
    """The byte order of a numpy dtype's pickled state (version 3), refused unless it is a plain one: no fields, no
    subarray, the given flags (0; 63 for object arrays). `reads` ends the refusal: what the reader takes."""
    if not (isinstance(state, tuple) and len(state) == 8 and state[0] == 3 and state[1] in ("<", ">", "=", "|")
            and state[2:] == (None, None, None, -1, -1, flags)):
        raise Refused(f"holds a numpy dtype with fields, a subarray or flags (only {reads} are read)")
    return state[1]


class _DtypeRef(_Inert):
    __slots__ = ("code", "byteorder")

    def __init__(self, code: str):
        super().__init__("a numpy dtype")
        self.code, self.byteorder = code, None

    def __setstate__(self, state):
        if self.byteorder is not None:
            raise Refused("sets a numpy dtype's state twice")
        self.byteorder = self.order(state)

    def order(self, state) -> str:
        """The byte order this reader accepts from a dtype's state (models/dti_trajectories.py reads more kinds)."""
        return dtype_byteorder(state, 0, "plain float32 / float64")


class ArrayRef(_Inert):
    """A numpy float array: shape, dtype and the raw bytes the pickle holds, checked; made by `materialize`."""
    __slots__ = ("shape", "dtype", "fortran", "raw")

    def __init__(self):
        super().__init__("a numpy array")
        self.shape = self.dtype = self.fortran = self.raw = None

    def __setstate__(self, state):
        if self.raw is not None:
            raise Refused("sets a numpy array's state twice")
        shape, dtype, fortran, raw = array_state(state)
        if not isinstance(dtype, _DtypeRef) or dtype.byteorder is None:
            raise Refused("holds a numpy array without a plain dtype")
        shape = array_shape(shape, fortran)
        if not isinstance(raw, bytes):
            raise Refused(f"holds a numpy array whose data is a {type(raw).__name__}, not bytes (an object array?)")
        check_array_bytes(shape, int(dtype.code[1:]), raw)
        self.shape, self.dtype, self.fortran, self.raw = shape, dtype, fortran, raw


def array_state(state) -> tuple:
    """numpy's pickled ndarray state (version 1, shape, dtype, order flag, data), its version checked: the last four."""
    if not (isinstance(state, tuple) and len(state) == 5 and state[0] == 1):
        raise Refused("holds a numpy array whose state is not numpy's (version 1, shape, dtype, order, bytes)")
    return state[1:]


def array_shape(shape, fortran) -> tuple[int, ...]:
    """An ndarray state's shape, checked with its order flag (a plain bool)."""
    shape = _dims(shape, "a numpy array's shape")
    if not isinstance(fortran, bool):
        raise Refused("holds a numpy array whose order flag is not true or false")
    return shape


def check_array_bytes(shape: tuple[int, ...], itemsize: int, raw) -> None:
    """The data an ndarray state holds must be exactly numel x itemsize bytes."""
    numel = math.prod(shape)
    if numel * itemsize != len(raw):
        raise Refused(f"holds a numpy array of shape {shape} ({numel:,} x {itemsize} bytes) with {len(raw):,} bytes of data")


def _dims(value, what: str) -> tuple[int, ...]:
    if not (isinstance(value, tuple) and len(value) <= MAX_DIMS
            and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in value)):
        raise Refused(f"holds {what} that is not a tuple of at most {MAX_DIMS} non-negative integers")
    return value


def _dtype_words(code: str) -> str:
    kinds = {"f": "float", "i": "int", "u": "uint", "c": "complex", "b": "bool", "O": "object", "V": "void",
             "U": "str", "S": "bytes", "M": "datetime64", "m": "timedelta64"}
    kind, digits = code[:1], code[1:]
    if kind == "O":
        return "object"
    if kind in kinds and digits.isdigit() and len(digits) <= 2:
        return f"{kinds[kind]}{int(digits) * 8}" if kind not in "bUSV" else kinds[kind]
    return repr(code[:20])


@dataclass
class _Context:
    records: dict            # storage key -> zip byte size
    numpy_arrays: bool
    storages: dict = field(default_factory=dict)   # key -> StorageRef
    tensors: list = field(default_factory=list)    # every TensorRef made

    def globals(self) -> dict:
        out = {"collections.OrderedDict": _OrderedDict,
               "torch._utils._rebuild_tensor_v2": _Call("torch._utils._rebuild_tensor_v2", self.rebuild_tensor),
               "torch._utils._rebuild_parameter": _Call("torch._utils._rebuild_parameter", self.rebuild_parameter)}
        for cls, (dtype, size) in STORAGE_DTYPES.items():
            out[f"torch.{cls}"] = _Inert(f"torch.{cls}")
        if self.numpy_arrays:
            ndarray = _Inert("numpy.ndarray")
            self.ndarray = ndarray
            reconstruct = _Call("numpy's _reconstruct", self.reconstruct)
            out.update({"numpy._core.multiarray._reconstruct": reconstruct, "numpy.core.multiarray._reconstruct": reconstruct,
                        "numpy.ndarray": ndarray, "numpy.dtype": _Call("numpy.dtype", self.dtype),
                        "_codecs.encode": _Call("_codecs.encode", self.encode)})
        return out

    # -- storages and tensors
    def storage(self, pid) -> StorageRef:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise Refused("holds a persistent id that is not a storage record")
        _, stype, key, location, numel = pid
        what = getattr(stype, "what", "")
        if not (isinstance(stype, _Inert) and what.startswith("torch.") and what[6:] in STORAGE_DTYPES):
            raise Refused("holds a storage record whose type is not one of torch's typed storages")
        dtype, size = STORAGE_DTYPES[what[6:]]
        if not (isinstance(key, str) and _KEY.fullmatch(key)):
            raise Refused("holds a storage record whose key is not a short name")
        if not (isinstance(location, str) and _LOCATION.fullmatch(location)):
            raise Refused(f"holds a storage on the device {str(location)[:20]!r} (expected cpu or cuda)")
        if isinstance(numel, bool) or not isinstance(numel, int) or numel < 0:
            raise Refused(f"holds a storage record ({key}) whose size is not a non-negative integer")
        if key not in self.records:
            raise Refused(f"names the storage data/{key}, which the file does not hold")
        if numel * size != self.records[key]:
            raise Refused(f"declares {numel:,} {dtype} values ({numel * size:,} bytes) for storage data/{key}, which holds "
                          f"{self.records[key]:,} bytes")
        seen = self.storages.get(key)
        if seen is not None:
            if seen.dtype != dtype:
                raise Refused(f"reads storage data/{key} as both {seen.dtype} and {dtype}")
            return seen
        ref = self.storages[key] = StorageRef(key, dtype, size, numel)
        return ref

    def rebuild_tensor(self, storage, offset, size, stride, requires_grad, hooks, metadata=None, *extra):
        if extra:
            raise Refused("calls _rebuild_tensor_v2 with extra arguments")
        if not isinstance(storage, StorageRef):
            raise Refused("builds a tensor from something that is not a storage record")
        if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
            raise Refused("builds a tensor at a storage offset that is not a non-negative integer")
        shape = _dims(size, "a tensor shape")
        stride = _dims(stride, "a tensor stride")
        if len(stride) != len(shape):
            raise Refused(f"builds a tensor of shape {shape} with {len(stride)} strides")
        numel = math.prod(shape)
        want, step = [], 1
        for d in reversed(shape):
            want.append(step)
            step *= d
        want = tuple(reversed(want))
        if numel and any(s != w for s, w, d in zip(stride, want, shape) if d > 1):
            raise Refused(f"holds a tensor of shape {shape} with strides {stride}; only contiguous tensors (strides {want}) "
                          "are read (a stride-0 or overlapping view repeats a few stored values many times)")
        if offset + numel > storage.numel:
            raise Refused(f"holds a tensor of {numel:,} values at offset {offset:,} of storage data/{storage.key}, which "
                          f"holds {storage.numel:,}")
        if not isinstance(requires_grad, bool):
            raise Refused("builds a tensor whose requires_grad is not true or false")
        if not (isinstance(hooks, _OrderedDict) and not hooks):
            raise Refused("builds a tensor with backward hooks")
        if metadata not in (None, {}) and not (isinstance(metadata, _OrderedDict) and not metadata):
            raise Refused("builds a tensor with metadata (conjugate / negative bits are not read)")
        ref = TensorRef(storage, offset, shape, numel)
        self.tensors.append(ref)
        return ref

    def rebuild_parameter(self, data, requires_grad, hooks, *extra):
        if extra or not isinstance(data, TensorRef) or not isinstance(requires_grad, bool) \
                or not (isinstance(hooks, _OrderedDict) and not hooks):
            raise Refused("builds a parameter from something other than a tensor without hooks")
        return data

    # -- numpy (CORL's state_mean / state_std)
    def reconstruct(self, cls, shape, typecode):
        if cls is not self.ndarray or shape != (0,) or typecode != b"b":
            raise Refused("calls numpy's _reconstruct with arguments numpy's own pickling never writes")
        return ArrayRef()

    def dtype(self, code, align=False, copy=True, *extra):
        if extra or not isinstance(code, str) or align is not False or copy is not True:
            raise Refused("builds a numpy dtype with arguments numpy's own pickling never writes")
        if code not in NUMPY_DTYPES:
            raise Refused(f"holds a numpy array of dtype {_dtype_words(code)}; only float32 and float64 arrays "
                          "(CORL's state_mean and state_std) are read")
        return _DtypeRef(code)

    @staticmethod
    def encode(text, encoding="utf-8", *extra):
        if extra or not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
            raise Refused("calls _codecs.encode other than as numpy's array pickling does (a str, latin1)")
        return text.encode("latin1")


class _Unpickler(pickle.Unpickler):
    def __init__(self, file, ctx: _Context):
        super().__init__(file)
        self._ctx = ctx
        self._globals = ctx.globals()

    def find_class(self, module, name):
        key = py3_name(str(module), str(name))
        if key not in self._globals:
            raise Refused(f"holds the global {key[:120]}")
        return self._globals[key]

    def persistent_load(self, pid):
        return self._ctx.storage(pid)


def unpickle(data: bytes, records: dict[str, int], numpy_arrays: bool):
    """data.pkl -> (a tree of dicts (OrderedDicts are a dict subclass of ours), lists, tuples, plain values,
    TensorRef and ArrayRef, context); pt_reader's materialize copies it into plain containers.
    records: storage key -> byte size of the zip member <archive>/data/<key>. Raises Refused."""
    allowed = frozenset(TORCH_GLOBALS + (NUMPY_GLOBALS if numpy_arrays else ()))
    scan_opcodes(data, allowed)
    ctx = _Context(records, numpy_arrays)
    try:
        obj = _Unpickler(io.BytesIO(data), ctx).load()
    except Refused:
        raise
    except RecursionError:
        raise Refused("has a pickle nested too deeply") from None
    except Exception as e:  # noqa: BLE001 - whatever the C unpickler says about a malformed stream: one clause
        raise Refused(f"has a damaged pickle ({_short(e)})") from None
    _check_tree(obj, set(), 0)
    return obj, ctx


def _check_tree(obj, seen: set, depth: int) -> None:
    """Only containers, plain values, TensorRef and filled ArrayRef in the unpickled tree (no stand-in in a value
    position), nested at most MAX_DEPTH deep. Each shared container is visited once (a pickle can share them
    exponentially), and nothing is copied."""
    if isinstance(obj, (str, bytes, int, float, type(None), TensorRef)):
        return
    if isinstance(obj, ArrayRef):
        if obj.raw is None:
            raise Refused("holds a numpy array without its data")
        return
    if id(obj) in seen:
        return
    if depth >= MAX_DEPTH:
        raise Refused(f"nests containers more than {MAX_DEPTH} deep")
    if isinstance(obj, (dict, list, tuple)):
        seen.add(id(obj))
        if isinstance(obj, dict):
            for k, v in obj.items():
                if not isinstance(k, (str, int)):
                    raise Refused(f"has a dict key of type {type(k).__name__}")
                _check_tree(v, seen, depth + 1)
        else:
            for v in obj:
                _check_tree(v, seen, depth + 1)
        return
    what = getattr(obj, "what", None) or type(obj).__name__
    raise Refused(f"holds {what} as a value (only tensors, float arrays, numbers, strings and containers are read)")


# ---- 3. records ---------------------------------------------------------------------------------------------
def check_records(ctx: _Context, file_bytes: int, decode_bytes: int, agent_params: int) -> int:
    """Tensors do not share bytes; referenced storages within the file's size and decode_bytes; elements within
    agent_params. Returns the storage bytes to read. Raises Refused (the clause names the limit)."""
    by_storage: dict[str, list[TensorRef]] = {}
    unique = {id(t): t for t in ctx.tensors}
    for t in unique.values():
        if t.numel:
            by_storage.setdefault(t.storage.key, []).append(t)
    for key, refs in by_storage.items():
        refs.sort(key=lambda t: t.offset)
        for a, b in zip(refs, refs[1:]):
            if b.offset < a.offset + a.numel:
                raise Refused(f"holds two tensors that share values of storage data/{key} (shapes {a.shape} and {b.shape}); "
                              "each weight must have its own bytes")
    stored = sum(s.numel * s.itemsize for s in ctx.storages.values())
    if stored > file_bytes:
        raise Refused(f"declares {stored:,} bytes of storages in a file of {file_bytes:,} bytes")
    if stored > decode_bytes:
        raise Refused(f"declares {stored:,} bytes of storages, over the limit of {decode_bytes:,} (decode_bytes, set by "
                      "SEQLENS_MAX_DECODE_BYTES)")
    elements = sum(t.numel for t in unique.values())
    if elements > agent_params:
        raise Refused(f"declares {elements:,} tensor values, over the limit of {agent_params:,} (agent_params, set by "
                      "SEQLENS_MAX_AGENT_PARAMS)")
    return stored


def _short(e: BaseException) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return (text if len(text) <= 120 else text[:117] + "...").rstrip(".")
