"""Long-format tables, one row per step: parquet, CSV, JSON.

Columns are detected, not assumed (see names.py): an episode id, a step index, per-feature columns
(obs_0.., observation_x..) or one list column, action or action_0.., reward, and done flags.
MuJoCo states (`Dataset.infos`) are columns qpos_0.. and qvel_0.., spelled and parsed as observation columns
are, read under d4rl_format's rules: both or neither, numbered 0..k-1 with 1 <= k <= MAX_INFO_COLUMNS, finite.
Parquet keeps their float type; CSV and JSON hold decimal text, read back as float64 (shortest repr, exact).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .budget import Budget, check_rows
from .d4rl_format import INFOS, MAX_INFO_COLUMNS
from .dataset import F32_MAX, Dataset, check_meta, starts_from_flags
from .errors import DatasetError
from .limits import ENV, human_bytes, limits
from .names import ACT_PREFIXES, ALIASES, OBS_PREFIXES, first_present, jsonable
from .npz_format import written_infos

META_KEY = b"seqlens"
FLAG_WORDS = {"true": 1, "false": 0, "1": 1, "0": 0, "1.0": 1, "0.0": 0, "yes": 1, "no": 0}


@dataclass
class _Plan:
    """Which file columns feed which Dataset field."""

    reward: str
    obs: list[str]
    act: list[str]
    obs_names: list[str]
    act_names: list[str]
    obs_is_list: bool = False
    act_is_list: bool = False
    episode: str | None = None
    step: str | None = None
    terminated: str | None = None
    truncated: str | None = None
    infos: dict[str, list[str]] = field(default_factory=dict)   # "qpos" -> [qpos_0, qpos_1, ...]
    ignored: list[str] = field(default_factory=list)


def _feature_suffixes(names: list[str], prefixes) -> list[tuple[str, str]]:
    """(column, suffix) for per-feature columns of one of the prefixes: obs_0, obs.x, obs[2]."""
    alt = "|".join(prefixes)
    bracket, sep = re.compile(rf"^({alt})\[(\d+)\]$", re.I), re.compile(rf"^({alt})[_.](.+)$", re.I)
    found = []
    for col in names:
        m = bracket.match(col) or sep.match(col)
        if m:
            found.append((col, m.group(2)))
    return found


def _feature_columns(names: list[str], prefixes) -> tuple[list[str], list[str]]:
    """Per-feature columns for one of the prefixes: obs_0, obs.x, obs[2] -> (columns, feature names)."""
    found = _feature_suffixes(names, prefixes)
    if not found:
        return [], []
    if all(s.isdigit() for _, s in found):  # numbered features: numeric order, names as in the file
        found.sort(key=lambda cs: int(cs[1]))
        return [c for c, _ in found], [c for c, _ in found]
    return [c for c, _ in found], [s for _, s in found]


def _field_columns(names, lower, prefixes, is_list, missing: str) -> tuple[list[str], list[str], bool]:
    """Per-feature columns (obs_0, ...) or else one column named by a prefix, scalar or list."""
    cols, feature_names = _feature_columns(names, prefixes)
    if cols:
        return cols, feature_names, False
    single = first_present(lower, prefixes)
    if single is None:
        raise DatasetError(missing)
    col = lower[single]
    return [col], [] if is_list(col) else [col], is_list(col)


def _info_columns(names: list[str], source: str) -> dict[str, list[str]]:
    """qpos_0.. and qvel_0.. in column order 0..k-1, or {} when either is absent (one alone cannot set a state).
    Checked from the names alone, before any value is read."""
    found = {k: _feature_suffixes(names, (k,)) for k in INFOS}
    if not all(found.values()):
        return {}
    out = {}
    for k, pairs in found.items():
        index = [int(s) if s.isascii() and s.isdigit() else -1 for _, s in pairs]
        if len(pairs) > MAX_INFO_COLUMNS or sorted(index) != list(range(len(pairs))):
            shown = ", ".join(c for c, _ in pairs[:5]) + (", ..." if len(pairs) > 5 else "")
            raise DatasetError(f"{source}: the {k} columns must be numbered {k}_0, {k}_1, ... with none missing or "
                               f"repeated, 1 to {MAX_INFO_COLUMNS:,} of them; got {len(pairs):,} ({shown}).")
        out[k] = [c for _, c in sorted(zip(index, (c for c, _ in pairs)))]
    return out


def _plan(names: list[str], is_list, source: str) -> _Plan:
    lower = {c.lower(): c for c in names}

    def pick(field_: str):
        key = first_present(lower, ALIASES[field_])
        return lower[key] if key else None

    reward = pick("rewards")
    if reward is None:
        raise DatasetError(f"{source} has no reward column (expected one of {', '.join(ALIASES['rewards'])}; columns are: {', '.join(names[:20])}).")
    listed = ', '.join(names[:20])
    obs, obs_names, obs_is_list = _field_columns(names, lower, OBS_PREFIXES, is_list, f"{source} has no observation columns (expected obs_0, obs_1, ... or observation_0, ... or one list column named obs/observation/state; columns are: {listed}).")
    act, act_names, act_is_list = _field_columns(names, lower, ACT_PREFIXES, is_list, f"{source} has no action column (expected action, or action_0, action_1, ...; columns are: {listed}).")
    plan = _Plan(reward, obs, act, obs_names, act_names, obs_is_list, act_is_list,
                 pick("episode"), pick("step"), pick("terminated"), pick("truncated"))
    plan.infos = _info_columns(names, source)
    plan.ignored = [c for c in names if c not in _used(plan)]
    return plan


def _used(plan: _Plan) -> set:
    infos = {c for cols in plan.infos.values() for c in cols}
    return set(plan.obs) | set(plan.act) | infos | {plan.reward, plan.episode, plan.step, plan.terminated, plan.truncated}


def _row(i: int, csv: bool) -> str:
    return f"row {i + 1}" + (f" (line {i + 2} counting the header)" if csv else "")


class _Builder:
    """Builds the Dataset arrays column by column, checking every value as it goes."""

    def __init__(self, plan: _Plan, n: int, source: str, csv: bool, act_discrete: bool, info_dtypes: dict | None = None):
        self.p, self.n, self.source, self.csv = plan, n, source, csv
        self.info_dtypes = info_dtypes or {}   # text formats: float64
        self.infos = {}
        self.obs = self.act = None
        self.act_discrete = act_discrete
        self.rew = np.empty(n, np.float32)
        self.term = np.zeros(n, bool)
        self.trunc = np.zeros(n, bool)
        self.step = np.empty(n, np.float64) if plan.step else None
        self.episode_ids = None

    def _numeric(self, values, col: str, f32: bool = True) -> np.ndarray:
        """Numbers from a column, every value checked: parsable, finite and (for f32) within float32's range."""
        if isinstance(values, pd.Categorical):  # dictionary-encoded strings: parse each distinct value once
            cats = np.asarray(values.categories, dtype=object)
            conv = pd.to_numeric(pd.Series(cats), errors="coerce").to_numpy(np.float64)
            bad = np.isnan(conv)[values.codes]
            if bad.any():
                i = int(np.argmax(bad))
                raise DatasetError(f"{col} is not a number at {_row(i, self.csv)} of {self.source} (it holds text, not shown here).")
            values = conv[values.codes]
        if values.dtype == object or values.dtype.kind in "USO":
            conv = pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(np.float64)
            bad = np.isnan(conv) & ~pd.isna(pd.Series(values)).to_numpy()
            if bad.any():
                i = int(np.argmax(bad))
                raise DatasetError(f"{col} is not a number at {_row(i, self.csv)} of {self.source} (it holds text, not shown here).")
            values = conv
        if values.dtype.kind == "f":
            ok = np.isfinite(values)
            if values.ndim > 1:
                ok = ok.all(axis=1)
            if not ok.all():
                i = int(np.argmax(~ok))
                bad = values[i]
                what = "a missing value (NaN)" if np.isnan(bad).any() else "inf"
                raise DatasetError(f"{col} has {what} at {_row(i, self.csv)} of {self.source}.")
            if f32 and values.dtype.itemsize > 4:  # checked first: a cast would print an overflow warning
                big = np.abs(values) > F32_MAX
                if big.any():
                    i = int(np.argmax(big.reshape(len(values), -1).any(axis=1)))
                    raise DatasetError(f"{col} has a value beyond the float32 range (about ±3.4e38) at {_row(i, self.csv)} of {self.source}.")
        return values

    def _flags(self, values, col: str) -> np.ndarray:
        if isinstance(values, pd.Categorical):  # map each distinct string once, then index by code
            words = pd.Series(values.categories.astype(str)).str.strip().str.lower().map(FLAG_WORDS)
            values = words.to_numpy(np.float64)[values.codes]
        if values.dtype == bool:
            return values
        if values.dtype == object or values.dtype.kind in "US":
            mapped = pd.Series(values).astype(str).str.strip().str.lower().map(FLAG_WORDS)
            values = mapped.to_numpy(np.float64)
        values = self._numeric(values, col)
        bad = ~np.isin(values, (0, 1))
        if bad.any():
            i = int(np.argmax(bad))
            raise DatasetError(f"{col} must be true/false or 0/1, got another number at {_row(i, self.csv)} of {self.source}.")
        return values.astype(bool)

    def _list(self, values, col: str) -> np.ndarray:
        rows = [json.loads(v) if isinstance(v, str) else v for v in values]
        widths = {np.size(r) for r in rows}
        if len(widths) > 1:
            first = np.size(rows[0])
            i = next(k for k, r in enumerate(rows) if np.size(r) != first)
            raise DatasetError(f"{col} has {np.size(rows[i])} values at {_row(i, self.csv)} but {first} at {_row(0, self.csv)} of {self.source} (ragged observation widths).")
        try:
            block = np.asarray(rows, dtype=np.float64)
        except (ValueError, TypeError):
            raise DatasetError(f"{col} holds a list with something other than numbers in {self.source}.") from None
        return self._numeric(block.reshape(len(rows), -1), col)

    def _matrix(self, get, cols: list[str], is_list: bool, dtype=np.float32) -> np.ndarray:
        """[rows, features] of dtype (float32 unless infos) from per-feature columns or one list column."""
        if is_list:
            block = get(cols[0], as_list=True)
            if not isinstance(block, np.ndarray) or block.dtype == object:
                block = self._list(get(cols[0]), cols[0])
            return self._numeric(block, cols[0]).astype(np.float32, copy=False)
        out = np.empty((self.n, len(cols)), dtype)
        for j, col in enumerate(cols):
            out[:, j] = self._numeric(get(col), col, f32=out.dtype.itemsize <= 4)
        return out

    def fill(self, get) -> None:
        p = self.p
        self.rew[:] = self._numeric(get(p.reward), p.reward)
        self.obs = self._matrix(get, p.obs, p.obs_is_list)
        self.act = get(p.act[0]).astype(np.int64) if self.act_discrete else self._matrix(get, p.act, p.act_is_list)
        if p.terminated:
            self.term[:] = self._flags(get(p.terminated), p.terminated)
        if p.truncated:
            self.trunc[:] = self._flags(get(p.truncated), p.truncated)
        for k, cols in p.infos.items():
            self.infos[k] = self._matrix(get, cols, False, self.info_dtypes.get(k, np.float64))
        if p.step:
            self.step[:] = self._numeric(get(p.step), p.step, f32=False)
        if p.episode:
            ep = get(p.episode)
            if isinstance(ep, pd.Categorical):  # object array sharing the distinct id strings, no copies
                ep = np.asarray(ep)
            if pd.isna(pd.Series(ep)).any():
                i = int(np.argmax(pd.isna(pd.Series(ep)).to_numpy()))
                raise DatasetError(f"{p.episode} is missing at {_row(i, self.csv)} of {self.source}.")
            self.episode_ids = ep

    def finish(self, meta: dict, fmt: str) -> Dataset:
        p, n = self.p, self.n
        obs_names = meta.get("obs_names") or p.obs_names or None
        act_names = meta.get("act_names") or p.act_names or None
        if self.act_discrete:
            act_names = act_names or ["action"]
        arrays = [self.obs, self.act, self.rew, self.term, self.trunc]
        infos, self.infos = self.infos, {}
        ids = []
        if p.episode:
            episode_ids, self.episode_ids = self.episode_ids, None
            try:  # episodes in id order (numbers or strings); fall back to order of first appearance
                codes, uniques = pd.factorize(episode_ids, sort=True)
            except TypeError:
                codes, uniques = pd.factorize(episode_ids, sort=False)
            del episode_ids
            ids = [u.item() if hasattr(u, "item") else u for u in uniques]
            if not _grouped(codes, self.step):  # grouping rows by episode costs one copy of everything
                order = np.lexsort((self.step, codes)) if p.step else np.argsort(codes, kind="stable")
                arrays = [a[order] for a in arrays]
                infos = {k: v[order] for k, v in infos.items()}
                codes = codes[order]
                if self.step is not None:
                    self.step = self.step[order]
                del order
            if self.step is not None:
                dup = (codes[1:] == codes[:-1]) & (self.step[1:] == self.step[:-1])
                if dup.any():
                    i = int(np.argmax(dup))
                    raise DatasetError(f"{self.source}: episode {int(codes[i]) + 1:,} of {len(ids):,} (counting in id order) "
                                       "has one step number twice.")
            starts = np.flatnonzero(np.diff(codes)) + 1
            starts = np.concatenate([[0], starts]).astype(np.int64)
        elif p.terminated or p.truncated:
            starts = starts_from_flags(self.term, self.trunc)
        else:
            starts = np.zeros(1, np.int64)
        info = dict(meta.get("metadata") or {})
        info["format"] = fmt
        if p.episode and ids != list(range(len(ids))):
            info["episode_ids"] = ids  # the file's own ids, for display
        if p.ignored:
            info["ignored_columns"] = p.ignored
        return Dataset(*arrays, starts, obs_names if obs_names and len(obs_names) == arrays[0].shape[1] else None,
                       act_names if act_names and (self.act_discrete or len(act_names) == arrays[1].shape[1]) else None,
                       meta.get("n_actions"), meta.get("env_id"), self.source, info, infos)


def _grouped(codes: np.ndarray, step: np.ndarray | None) -> bool:
    """Rows already in episode order (and step order within each episode)?"""
    same = codes[1:] == codes[:-1]
    if not (same | (codes[1:] > codes[:-1])).all():
        return False
    return step is None or bool((step[1:] > step[:-1])[same].all())


def _bare_action(plan: _Plan) -> bool:
    """Discrete actions are one bare integer column (`action`); action_0.. columns are vector components."""
    return not plan.act_is_list and len(plan.act) == 1 and plan.act[0].lower() in ACT_PREFIXES


# ---- readers -----------------------------------------------------------------------------------

def read_parquet(path: Path, name: str) -> Dataset:
    try:
        pf = pq.ParquetFile(path, pre_buffer=False)  # pre-buffering holds whole row groups of raw pages
    except (pa.ArrowException, OSError) as e:
        raise DatasetError(f"{name} is not a readable parquet file ({str(e).splitlines()[0]}).") from None
    schema = pf.schema_arrow
    n = pf.metadata.num_rows
    if n == 0:
        raise DatasetError(f"{name} has no rows.")
    check_rows(name, n)
    types = {f.name: f.type for f in schema}
    plan = _plan(schema.names, lambda c: pa.types.is_list(types[c]) or pa.types.is_fixed_size_list(types[c])
                 or pa.types.is_large_list(types[c]), name)
    used = [c for c in schema.names if c in _used(plan)]
    info_dtypes = {k: _info_dtype(cols, types, name) for k, cols in plan.infos.items()}
    budget = Budget(name)
    _check_parquet_sizes(pf.metadata, used, types, budget)
    strings = [c for c in used if _is_text(types[c])]
    if strings:  # kept dictionary-encoded: a tiny dictionary page must not expand to one string per row
        pf = pq.ParquetFile(path, pre_buffer=False, metadata=pf.metadata, read_dictionary=strings)
    discrete = _bare_action(plan) and (pa.types.is_integer(types[plan.act[0]]) or pa.types.is_boolean(types[plan.act[0]]))
    meta = _parquet_meta(schema.metadata, name)
    builder = _Builder(plan, n, name, csv=False, act_discrete=discrete, info_dtypes=info_dtypes)

    def get(col, as_list=False):
        # One column at a time: peak memory stays near the output arrays (a whole-table read doubles it).
        chunked = pf.read(columns=[col], use_threads=False).column(0)
        if pa.types.is_dictionary(chunked.type):
            return _categorical(chunked, col, budget)
        arr = chunked.combine_chunks()
        if arr.null_count:
            i = int(np.argmax(arr.is_null().to_numpy(zero_copy_only=False)))
            raise DatasetError(f"{col} has a missing value at {_row(i, False)} of {name}.")
        if as_list:
            lengths = pc.list_value_length(arr).to_numpy(zero_copy_only=False)
            if (lengths != lengths[0]).any():
                i = int(np.argmax(lengths != lengths[0]))
                raise DatasetError(f"{col} has {lengths[i]} values at {_row(i, False)} but {lengths[0]} at row 1 of {name} (ragged observation widths).")
            return arr.flatten().to_numpy(zero_copy_only=False).reshape(len(arr), int(lengths[0]))
        return arr.to_numpy(zero_copy_only=False)

    try:
        builder.fill(get)
    except (pa.ArrowException, OSError) as e:
        raise DatasetError(f"{name} is a damaged parquet file ({str(e).splitlines()[0]}).") from None
    return builder.finish(meta, "parquet")


def _info_dtype(cols: list[str], types: dict, name: str) -> np.dtype:
    """The numpy float type of one infos array's parquet columns (floats only, as d4rl_format reads them)."""
    bad = [c for c in cols if not pa.types.is_floating(types[c])]
    if bad:
        raise DatasetError(f"{name}: column {bad[0]} has type {types[bad[0]]}; qpos and qvel columns must be floats.")
    return np.result_type(*(types[c].to_pandas_dtype() for c in cols))


def _is_text(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_binary(t) or pa.types.is_large_binary(t)


def _value_bytes(t: pa.DataType) -> int:
    """Decoded bytes per stored value: the fixed width of numbers, 8 for anything else (a string's slot)."""
    while pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        t = t.value_type
    try:
        return max(1, t.bit_width // 8)
    except ValueError:
        return 8


def _check_parquet_sizes(md: pq.FileMetaData, used: list[str], types: dict, budget: Budget) -> None:
    """Each used column's declared size, from the footer (values x width, and uncompressed page bytes,
    which include any dictionary page), checked before a page is decompressed."""
    leaves, start = {}, 0  # parquet stores each top-level column's leaves contiguously, in schema order
    for field, t in types.items():
        leaves[field] = range(start, start + _leaf_count(t))
        start += len(leaves[field])
    for col in used:
        values = uncompressed = 0
        for g in range(md.num_row_groups):
            rg = md.row_group(g)
            for j in leaves[col]:
                chunk = rg.column(j)
                values += chunk.num_values
                uncompressed += chunk.total_uncompressed_size
        budget.spend(max(values * _value_bytes(types[col]), uncompressed), f"{md.num_rows:,} steps of {col}")


def _leaf_count(t: pa.DataType) -> int:
    if pa.types.is_struct(t):
        return sum(_leaf_count(t.field(i).type) for i in range(t.num_fields))
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        return _leaf_count(t.value_type)
    if pa.types.is_map(t):
        return _leaf_count(t.key_type) + _leaf_count(t.item_type)
    return 1


def _categorical(chunked: pa.ChunkedArray, col: str, budget: Budget) -> pd.Categorical:
    """A dictionary-encoded column as a pandas Categorical (codes + the distinct values, no per-row strings)."""
    dictionary_bytes = sum(c.dictionary.nbytes for c in chunked.chunks)
    budget.spend(dictionary_bytes, f"a {human_bytes(dictionary_bytes)} dictionary of distinct {col} values")
    cat = chunked.to_pandas().array
    if (cat.codes < 0).any():
        i = int(np.argmax(cat.codes < 0))
        raise DatasetError(f"{col} has a missing value at {_row(i, False)} of {budget.name}.")
    return cat


def _parquet_meta(metadata: dict | None, name: str) -> dict:
    if not metadata or META_KEY not in metadata:
        return {}
    raw = metadata[META_KEY]
    if len(raw) > limits().json_bytes:
        raise DatasetError(f"{name}: its seqlens metadata is {human_bytes(len(raw))} of JSON; the limit is {human_bytes(limits().json_bytes)} ({ENV['json_bytes']}).")
    try:
        meta = json.loads(raw)
    except (ValueError, RecursionError):
        raise DatasetError(f"{name}: its seqlens schema metadata is not valid JSON.") from None
    return check_meta(meta, name, "its seqlens schema metadata")


def _read_frame(df: pd.DataFrame, name: str, fmt: str) -> Dataset:
    if len(df) == 0:
        raise DatasetError(f"{name} has no rows.")
    df.columns = [str(c).strip() for c in df.columns]
    sample = df.iloc[0]
    plan = _plan(list(df.columns), lambda c: isinstance(sample[c], (list, tuple, np.ndarray)) or
                 (isinstance(sample[c], str) and sample[c].strip().startswith("[")), name)
    discrete = _bare_action(plan) and (pd.api.types.is_integer_dtype(df[plan.act[0]]) or pd.api.types.is_bool_dtype(df[plan.act[0]]))
    builder = _Builder(plan, len(df), name, csv=fmt == "csv", act_discrete=discrete)
    builder.fill(lambda col, as_list=False: df[col].to_numpy())
    return builder.finish({}, fmt)


def _check_csv_size(path: Path, name: str, sep: bytes) -> None:
    """Rows x columns x 8 bytes, from newlines counted in 4 MiB chunks, checked before pandas parses."""
    rows, last = 0, b"\n"
    with open(path, "rb") as f:
        header = f.readline(1 << 20)
        for chunk in iter(lambda: f.read(1 << 22), b""):
            rows += chunk.count(b"\n")
            last = chunk[-1:]
    rows += last != b"\n"  # a last line without a newline
    cols = header.count(sep) + 1
    check_rows(name, rows)
    Budget(name).spend(rows * cols * 8, f"{rows:,} rows of {cols:,} columns")


def read_csv(path: Path, name: str) -> Dataset:
    _check_csv_size(path, name, b"\t" if path.suffix.lower() == ".tsv" else b",")
    try:
        df = pd.read_csv(path, sep=None if path.suffix.lower() == ".tsv" else ",", engine="c" if path.suffix.lower() != ".tsv" else "python")
    except pd.errors.EmptyDataError:
        raise DatasetError(f"{name} has no header or rows.") from None
    except pd.errors.ParserError as e:
        msg = str(e).strip().splitlines()[0]
        m = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", msg)
        if m:
            raise DatasetError(f"{name}: line {m.group(2)} has {m.group(3)} fields but the header has {m.group(1)} (ragged rows).") from None
        raise DatasetError(f"{name} is not a well-formed CSV file ({msg}).") from None
    except UnicodeDecodeError:
        raise DatasetError(f"{name} is not a text CSV file (it has bytes that are not UTF-8).") from None
    return _read_frame(df, name, "csv")


def read_json(path: Path, name: str) -> Dataset:
    size, cap = path.stat().st_size, limits().json_bytes
    if size > cap:
        raise DatasetError(f"{name} is {human_bytes(size)} of JSON, which decodes to about 10 times that in Python objects; the limit is {human_bytes(cap)} ({ENV['json_bytes']}), so convert it to parquet or npz.")
    try:
        text = path.read_text()
    except UnicodeDecodeError:
        raise DatasetError(f"{name} is not a text JSON file (it has bytes that are not UTF-8).") from None
    try:
        data = json.loads(text)
        lines = None
    except RecursionError:
        raise DatasetError(f"{name} nests JSON too deeply to read (expected step records or columns).") from None
    except json.JSONDecodeError as e:
        try:  # JSON lines: one object per line
            lines = [json.loads(line) for line in text.splitlines() if line.strip()]
        except (json.JSONDecodeError, RecursionError):
            raise DatasetError(f"{name} is not valid JSON ({e.msg} at line {e.lineno}).") from None
        data = None
    if lines is not None:
        records = lines
    elif isinstance(data, list):
        records = data
    elif isinstance(data, dict) and all(isinstance(v, list) for v in data.values()):
        if len({len(v) for v in data.values()}) > 1:
            raise DatasetError(f"{name}: the column lists have different lengths ({', '.join(f'{k}: {len(v)}' for k, v in data.items())}).")
        records = None
        df = pd.DataFrame(data)
    else:
        raise DatasetError(f"{name} must hold a list of step records (one object per step) or an object of equal-length columns.")
    if records is not None:
        if not all(isinstance(r, dict) for r in records):
            raise DatasetError(f"{name} must hold one JSON object per step, e.g. {{\"episode\": 0, \"obs_0\": 0.1, \"action\": 1, \"reward\": 1.0}}.")
        df = pd.DataFrame.from_records(records)
    return _read_frame(df, name, "json")


# ---- writers -----------------------------------------------------------------------------------

def _columns(ds: Dataset, text: bool = False) -> dict[str, np.ndarray]:
    """Flat per-step columns; with text, infos as shortest-repr float64 strings (CSV's %.9g is exact for float32 only)."""
    def names(prefix, given, dim):
        default = [f"{prefix}_{i}" for i in range(dim)]
        return default if given in (None, default) else [f"{prefix}_{g}" for g in given]

    cols = {"episode": ds.episode_index, "step": ds.timesteps}
    for j, c in enumerate(names("obs", ds.obs_names, ds.obs_dim)):
        cols[c] = ds.observations[:, j]
    if ds.discrete:
        cols["action"] = ds.actions
    else:
        for j, c in enumerate(names("action", ds.act_names, ds.act_dim)):
            cols[c] = ds.actions[:, j]
    cols.update(reward=ds.rewards, terminated=ds.terminated, truncated=ds.truncated)
    for k, v in written_infos(ds).items():
        for j in range(v.shape[1]):
            cols[f"{k}_{j}"] = v[:, j].astype(np.float64).astype(str) if text else v[:, j]
    if len(set(cols)) != len(cols):
        raise DatasetError(f"{ds.source}: feature names give duplicate column names.")
    return cols


def _meta(ds: Dataset) -> str:
    return json.dumps({"obs_names": ds.obs_names, "act_names": ds.act_names, "n_actions": ds.n_actions,
                       "env_id": ds.env_id, "metadata": ds.metadata}, default=jsonable)


def write_parquet(ds: Dataset, path: Path) -> None:
    table = pa.table(_columns(ds))
    table = table.replace_schema_metadata({META_KEY: _meta(ds).encode()})
    pq.write_table(table, path, compression="zstd")


def write_csv(ds: Dataset, path: Path) -> None:
    pd.DataFrame(_columns(ds, text=True)).to_csv(path, index=False, float_format="%.9g")


def write_json(ds: Dataset, path: Path) -> None:
    """Records, one object per step. tolist() gives exact Python floats, and json writes the shortest
    repr that reads back to the same value (pandas' to_json rounds to a fixed number of decimals)."""
    cols = _columns(ds)
    names, values = list(cols), [c.tolist() for c in cols.values()]
    with open(path, "w") as f:
        json.dump([dict(zip(names, row)) for row in zip(*values)], f, separators=(",", ":"))
