"""The pre-registered findings (findings.toml, issue 15): loading and checking the file, the verdict rules (parsed,
never eval'd), pooling a metric across training seeds, and the per-seed result files `reproduce` writes and reads.

- `load_findings(path)`: every field of every finding checked; a malformed file is one sentence (FindingsError).
- Rules: a conjunction (`and`) of comparisons `NAME OP NUMBER` or `NAME OP NAME`, OP one of >=, <=, >, <, ==.
  NAME is `estimate`, `ci_low`, `ci_high` (the headline metric pooled across seeds) or `<secondary>_estimate`,
  `<secondary>_ci_low`, `<secondary>_ci_high` for a secondary metric the finding declares. `estimate` is the mean of
  the per-seed metric values (a point estimate); `ci_low` / `ci_high` the bounds of the across-seed interval [meta]
  `interval` names (registration 1: the stratified bootstrap; from registration 2 on, "t_over_seeds", whose coverage
  `stats.coverage` checks). A rule that must hold "with confidence" reads a bound (`ci_low >= 0.9`), not `estimate`. A small tokenizer and
  parser (no eval): anything else is one sentence saying what is wrong.
- `verdict(finding, values)`: True / False from the rule, or None when a value it names was not measured.
- `pool(per_seed, metric)`: the headline estimate is the mean of the per-seed metric; its CI a stratified (two-stage)
  percentile bootstrap: each resample draws the seeds with replacement, then, within each drawn seed, its units
  (episodes, episode pairs, start states) with replacement, and recomputes the metric on that seed's resampled
  values (a ratio or a rank correlation is recomputed, not averaged). A seed's raw values are a number (nothing to
  resample), an array (rows = units, resampled along axis 0; the other axes ride along, so paired values stay
  paired), or dicts / lists of those (each array an independent stratum: episodes within one target, one agent's
  episodes); anything else (targets, data ranges) is passed through unchanged. With one seed the CI is the within-
  seed bootstrap (for a 1-D array and the mean, the same interval as `stats.bootstrap_ci` with the same seed).
  The resampling is `stats.stratified_bootstrap_ci` (every interval comes from analysis/core/stats.py).
- Seed files (`SEED_FORMAT`): one JSON file per training seed, `seed<k>.json`, holding every finding's raw values
  for that seed and the command that made them; `write_seed_file` / `read_seed_files`.
"""
from __future__ import annotations

import json
import math
import re
import subprocess
import tomllib
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import numpy as np

from analysis.core.stats import LEVEL, N_BOOT, iqm_ci, performance_profile, stratified_bootstrap_ci, t_interval

ROOT = Path(__file__).resolve().parents[2]
FIELDS = ("id", "paper", "claim", "agents", "split", "metric", "secondary", "target", "rule")
META_FIELDS = {"seeds": int, "ci_level": float, "bootstrap": str, "interval": str, "reset_seeds": str,
               "beyond_targets": list}
# [meta] beyond_targets: return-conditioning targets above the data's best, as multiples x of its return range
# (target return_min + x * range, each x > 1, e.g. [1.25, 1.5]); [] (registration 1's and the default): none.
# [meta] interval: the across-seed interval a rule's ci_low / ci_high are ("stratified_bootstrap", registration 1's and
# the default; "t_over_seeds": Student's t over the per-seed values, with per-seed bootstrap CIs and the IQM beside).
# [meta] reset_seeds: where evaluation start states come from ("offset": the evaluation seed + i, registration 1's and
# the default; "stream": a seed per training seed and finding, reproduce.evaluation_seed).
META_CHOICES = {"interval": ("stratified_bootstrap", "t_over_seeds"), "reset_seeds": ("offset", "stream")}
REGISTRATION_FIELDS = {"version": int, "previous_commit": str, "code_commit": str, "created": str, "disclosures": list,
                       "code": dict, "recipes": dict}
_SHA = re.compile(r"[0-9a-f]{64}\Z")
OPS = (">=", "<=", "==", ">", "<")
PARTS = ("estimate", "ci_low", "ci_high")
SEED_FORMAT = "seqlens-seed-results/2"     # /2 adds code_commit, checkpoints {agent: sha256}, hashes, per-finding agents
SEED_FORMATS = ("seqlens-seed-results/1", SEED_FORMAT)
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


class FindingsError(ValueError):
    """findings.toml, a rule or a seed file that cannot be used: one sentence."""


# ---- rules ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Comparison:
    left: str                  # a name
    op: str
    right: str | float         # a name or a number
    literal: str = ""          # the number as the rule writes it

    @property
    def text(self) -> str:
        right = self.right if isinstance(self.right, str) else (self.literal or _num(self.right))
        return f"{self.left} {self.op} {right}"

    def holds(self, a: float, b: float) -> bool:
        # equal up to float rounding counts as equal: a Spearman of exactly 0.9 computes as 0.8999999999999999, and a
        # rounding error must not decide a verdict (the tolerance is far below any metric's resolution)
        tie = math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
        return {">=": a >= b or tie, "<=": a <= b or tie, ">": a > b and not tie, "<": a < b and not tie,
                "==": tie}[self.op]


@dataclass(frozen=True)
class Rule:
    text: str
    comparisons: tuple[Comparison, ...]

    @property
    def names(self) -> list[str]:
        out = []
        for c in self.comparisons:
            for n in (c.left, c.right):
                if isinstance(n, str) and n not in out:
                    out.append(n)
        return out


def _num(x: float) -> str:
    return f"{x:g}"


_TOKEN = re.compile(r"\s*(?:(?P<num>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)|(?P<name>[A-Za-z_][A-Za-z0-9_]*)"
                    r"|(?P<op>>=|<=|==|>|<))")
_FORM = "a rule is comparisons NAME OP NUMBER or NAME OP NAME (OP one of >=, <=, >, <, ==) joined by 'and'"


def rule_names(secondary=()) -> list[str]:
    """The names a rule may use: estimate, ci_low, ci_high and <secondary>_estimate|_ci_low|_ci_high."""
    return list(PARTS) + [f"{s}_{p}" for s in secondary for p in PARTS]


def parse_rule(text: str, secondary=(), where: str = "rule") -> Rule:
    """The rule as a Rule; a FindingsError (one sentence) for bad syntax or a name the finding does not declare."""
    if not isinstance(text, str) or not text.strip():
        raise FindingsError(f"{where} is empty; {_FORM}.")
    tokens, pos, s = [], 0, text.rstrip()
    while pos < len(s):
        m = _TOKEN.match(s, pos)
        if not m or m.end() == pos:
            bad = s[pos:].lstrip()[:1]
            raise FindingsError(f"{where} '{text}' has an unexpected character '{bad}' at position "
                                f"{len(s) - len(s[pos:].lstrip()) + 1}; {_FORM}.")
        kind = m.lastgroup
        tokens.append((kind, m.group(kind)))
        pos = m.end()
    allowed = rule_names(secondary)
    comparisons, i = [], 0
    while True:
        part = tokens[i:i + 3]
        kinds = [k for k, _ in part]
        if len(part) < 3 or kinds[1] != "op" or kinds[0] != "name" or kinds[2] not in ("name", "num") \
                or part[0][1] == "and" or part[2][1] == "and":
            got = " ".join(v for _, v in part) or "nothing"
            raise FindingsError(f"{where} '{text}': expected a comparison NAME OP NUMBER or NAME OP NAME, got '{got}'; {_FORM}.")
        (_, left), (_, op), (rk, right) = part
        for name in (left, right) if rk == "name" else (left,):
            if name not in allowed:
                raise FindingsError(f"{where} '{text}' names '{name}', which this finding does not declare; "
                                    f"it may name {', '.join(allowed)}.")
        comparisons.append(Comparison(left, op, right) if rk == "name" else Comparison(left, op, float(right), right))
        i += 3
        if i == len(tokens):
            return Rule(text, tuple(comparisons))
        if tokens[i] != ("name", "and") or i + 1 == len(tokens):
            got = tokens[i][1]
            raise FindingsError(f"{where} '{text}': expected 'and' and another comparison after '{comparisons[-1].text}', "
                                f"got '{got}' {'at the end' if i + 1 == len(tokens) else ''}".rstrip() + f"; {_FORM}.")
        i += 1


# ---- findings.toml --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PreRegistered:
    """One finding as findings.toml states it."""

    id: str
    paper: str
    claim: str
    agents: tuple[str, ...]
    split: str
    metric: str
    secondary: tuple[str, ...]
    target: str
    rule: Rule

    @property
    def metrics(self) -> list[str]:
        return [self.metric, *self.secondary]


@dataclass(frozen=True)
class Registry:
    path: str
    meta: dict
    findings: tuple[PreRegistered, ...]
    registration: dict | None = None     # [registration] (analysis/research/registration.py), None: registration 1

    @property
    def interval(self) -> str:
        return self.meta.get("interval", "stratified_bootstrap")

    @property
    def beyond_targets(self) -> tuple[float, ...]:
        return tuple(float(x) for x in self.meta.get("beyond_targets", ()))

    @property
    def reset_seeds(self) -> str:
        return self.meta.get("reset_seeds", "offset")

    def get(self, finding_id: str) -> PreRegistered:
        for f in self.findings:
            if f.id == finding_id:
                return f
        raise FindingsError(f"{Path(self.path).name} has no finding '{finding_id}'; it has "
                            f"{', '.join(f.id for f in self.findings)}.")

    @property
    def level(self) -> float:
        return float(self.meta.get("ci_level", LEVEL))


def load_findings(path=ROOT / "findings.toml", text: str | None = None) -> Registry:
    """findings.toml checked field by field: a Registry, or a FindingsError (one sentence). text: the file's
    content as given (e.g. without its [registration], which `register` rewrites), path then only names it."""
    path = Path(path)
    name = path.name
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8") if text is None else text)
    except FileNotFoundError:
        raise FindingsError(f"{path} does not exist; the pre-registered findings are read from it.") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise FindingsError(f"{name} is not valid TOML: {e}.") from None
    extra = set(doc) - {"meta", "finding", "registration"}
    if extra:
        raise FindingsError(f"{name} has an unknown top-level entry '{sorted(extra)[0]}'; it holds [meta], [[finding]] "
                            "and [registration] tables only.")
    meta = doc.get("meta", {})
    if not isinstance(meta, dict):
        raise FindingsError(f"{name}: meta must be a table ([meta]).")
    for k, v in meta.items():
        if k not in META_FIELDS:
            raise FindingsError(f"{name}: [meta] has an unknown field '{k}'; its fields are {', '.join(META_FIELDS)}.")
        want = META_FIELDS[k]
        if want is float and isinstance(v, int) and not isinstance(v, bool):
            v = float(v)
        if not isinstance(v, want) or isinstance(v, bool):
            what = {int: "an integer", float: "a number", list: "a list", str: "a string"}[want]
            raise FindingsError(f"{name}: [meta] {k} must be {what}, got {v!r}.")
    bt = meta.get("beyond_targets", [])
    if not all(isinstance(x, (int, float)) and not isinstance(x, bool) and x > 1 for x in bt):
        raise FindingsError(f"{name}: [meta] beyond_targets must be numbers above 1 (multiples of the data's return "
                            f"range, e.g. [1.25, 1.5]), got {bt!r}.")
    for k, choices in META_CHOICES.items():
        if k in meta and meta[k] not in choices:
            raise FindingsError(f"{name}: [meta] {k} must be one of {', '.join(choices)}, got {meta[k]!r}.")
    if "seeds" in meta and meta["seeds"] < 1:
        raise FindingsError(f"{name}: [meta] seeds must be at least 1, got {meta['seeds']}.")
    if "ci_level" in meta and not 0 < float(meta["ci_level"]) < 1:
        raise FindingsError(f"{name}: [meta] ci_level must lie between 0 and 1, got {meta['ci_level']}.")
    items = doc.get("finding")
    if not isinstance(items, list) or not items:
        raise FindingsError(f"{name} has no [[finding]] tables; it needs at least one.")
    out, seen = [], set()
    for i, f in enumerate(items, 1):
        if not isinstance(f, dict):
            raise FindingsError(f"{name}: finding {i} is not a table.")
        label = f"{name}, finding {i}" + (f" ('{f['id']}')" if isinstance(f.get("id"), str) else "")
        for k in f:
            if k not in FIELDS:
                raise FindingsError(f"{label} has an unknown field '{k}'; a finding's fields are {', '.join(FIELDS)}.")
        for k in FIELDS:
            if k not in f:
                raise FindingsError(f"{label} lacks the field '{k}'; a finding's fields are {', '.join(FIELDS)}.")
        for k in ("id", "paper", "claim", "split", "metric", "target", "rule"):
            if not isinstance(f[k], str) or not f[k].strip():
                raise FindingsError(f"{label}: {k} must be a non-empty string, got {f[k]!r}.")
        for k in ("agents", "secondary"):
            v = f[k]
            if not isinstance(v, list) or not all(isinstance(x, str) and x.strip() for x in v):
                raise FindingsError(f"{label}: {k} must be a list of non-empty strings, got {v!r}.")
            if len(set(v)) != len(v):
                raise FindingsError(f"{label}: {k} lists '{next(x for x in v if v.count(x) > 1)}' twice.")
        if not f["agents"]:
            raise FindingsError(f"{label}: agents is empty; a finding names the agents it measures.")
        for k, v in [("id", f["id"]), ("metric", f["metric"])] + [("secondary", s) for s in f["secondary"]]:
            if not _IDENT.match(v):
                raise FindingsError(f"{label}: {k} '{v}' is not a name (letters, digits and _, not starting with a digit).")
        if f["metric"] in f["secondary"]:
            raise FindingsError(f"{label}: the metric '{f['metric']}' is also listed as a secondary metric.")
        if f["id"] in seen:
            raise FindingsError(f"{name} has two findings with the id '{f['id']}'.")
        seen.add(f["id"])
        rule = parse_rule(f["rule"], f["secondary"], where=f"{label}: the rule")
        out.append(PreRegistered(f["id"], f["paper"], f["claim"], tuple(f["agents"]), f["split"], f["metric"],
                                 tuple(f["secondary"]), f["target"], rule))
    return Registry(str(path), dict(meta), tuple(out), _registration(doc.get("registration"), name))


def _registration(reg, name: str) -> dict | None:
    """[registration] checked: {version, previous_commit, code_commit, created, disclosures, code, recipes}."""
    if reg is None:
        return None
    if not isinstance(reg, dict):
        raise FindingsError(f"{name}: registration must be a table ([registration]).")
    for k in reg:
        if k not in REGISTRATION_FIELDS:
            raise FindingsError(f"{name}: [registration] has an unknown field '{k}'; its fields are "
                                f"{', '.join(REGISTRATION_FIELDS)}.")
    for k in ("version", "code", "recipes"):
        if k not in reg:
            raise FindingsError(f"{name}: [registration] lacks '{k}'; `python cli.py register` writes it.")
    for k, want in REGISTRATION_FIELDS.items():
        if k in reg and (not isinstance(reg[k], want) or isinstance(reg[k], bool)):
            what = {int: "an integer", str: "a string", list: "a list", dict: "a table"}[want]
            raise FindingsError(f"{name}: [registration] {k} must be {what}, got {reg[k]!r}.")
    if reg["version"] < 2:
        raise FindingsError(f"{name}: [registration] version must be 2 or more (version 1 is the file without the table), "
                            f"got {reg['version']}.")
    if not all(isinstance(d, str) and d.strip() for d in reg.get("disclosures", [])):
        raise FindingsError(f"{name}: [registration] disclosures must be a list of non-empty strings.")
    for k in ("code", "recipes"):   # a finding added or removed since is not an error: the report names it
        for fid, h in reg[k].items():
            if not _IDENT.match(fid):
                raise FindingsError(f"{name}: [registration.{k}] '{fid}' is not a finding id.")
            if not isinstance(h, str) or not _SHA.match(h):
                raise FindingsError(f"{name}: [registration.{k}] {fid} must be a sha256 (64 hex digits), got {h!r}.")
    return {"disclosures": [], **reg}


def last_commit(path=ROOT / "findings.toml") -> tuple[str, str] | None:
    """(short hash, date YYYY-MM-DD) of the commit that last changed what `path` says: its parsed TOML (claims,
    targets, rules), so a commit that only edits a comment or the layout does not move the pre-registration date.
    None outside a git checkout, without git, or for a file git does not track."""
    path = Path(path).resolve()

    def git(*args) -> subprocess.CompletedProcess | None:
        try:
            return subprocess.run(["git", *args], cwd=path.parent, capture_output=True, text=True, timeout=20)
        except (OSError, subprocess.SubprocessError):
            return None

    def parsed(commit: str):
        shown = git("show", f"{commit}:./{path.name}")
        if shown is None or shown.returncode != 0:
            return None   # not in that commit (the file was added after it)
        try:
            return tomllib.loads(shown.stdout)
        except tomllib.TOMLDecodeError:
            return shown.stdout

    log = git("log", "--format=%h %cs", "--", path.name)
    if log is None or log.returncode != 0:
        return None
    commits = [line.split() for line in log.stdout.splitlines() if len(line.split()) == 2]
    for i, (commit, day) in enumerate(commits):
        if i == len(commits) - 1 or parsed(f"{commit}^") != parsed(commit):
            return commit, day
    return None


def changed_since_commit(path=ROOT / "findings.toml") -> bool | None:
    """True when the working copy of `path` differs from its last commit; None when git cannot say (no checkout,
    or a file git does not track)."""
    path = Path(path).resolve()
    if last_commit(path) is None:
        return None
    try:
        res = subprocess.run(["git", "diff", "--quiet", "HEAD", "--", path.name], cwd=path.parent,
                             capture_output=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    return {0: False, 1: True}.get(res.returncode)


# ---- verdicts -------------------------------------------------------------------------------------------
def _measured(v) -> bool:
    return v is not None and isinstance(v, (int, float, np.floating, np.integer)) and math.isfinite(float(v))


def verdict(finding, values: dict) -> tuple[bool | None, list[dict]]:
    """(True / False by the finding's rule, or None when a value it names is missing or not finite; the comparisons,
    each {"comparison", "left", "left_value", "op", "right", "right_value", "holds"}). `finding` is a
    PreRegistered (or anything with a parsed `rule`); values: name -> number (see `rule_values`)."""
    out, verdict_ = [], True
    for c in finding.rule.comparisons:
        a = values.get(c.left)
        b = values.get(c.right) if isinstance(c.right, str) else c.right
        holds = c.holds(float(a), float(b)) if _measured(a) and _measured(b) else None
        out.append({"comparison": c.text, "left": c.left, "left_value": None if not _measured(a) else float(a), "op": c.op,
                    "right": c.right, "right_value": None if not _measured(b) else float(b), "holds": holds})
        if holds is None:
            verdict_ = None
        elif not holds and verdict_ is not None:
            verdict_ = False
    return verdict_, out


def missing_names(comparisons: list[dict]) -> list[str]:
    """The names a verdict lacked a value for, in rule order."""
    out = []
    for c in comparisons:
        for side in ("left", "right"):
            if isinstance(c[side], str) and c[f"{side}_value"] is None and c[side] not in out:
                out.append(c[side])
    return out


def rule_values(finding: PreRegistered, pooled: dict) -> dict:
    """The names a rule may read, from pooled results {metric: pool(...)} (a metric not pooled is left out)."""
    values = {}
    for m in finding.metrics:
        p = pooled.get(m)
        if p is None:
            continue
        prefix = "" if m == finding.metric else f"{m}_"
        values.update({prefix + k: p[k] for k in PARTS})
    return values


def rule_thresholds(finding: PreRegistered) -> dict[str, list[float]]:
    """{metric: the numbers the rule compares it with}: the taus of its performance profile over seeds (the share of
    seeds above each threshold), e.g. {"spearman": [0.9]} for `ci_low >= 0.9`."""
    out: dict[str, list[float]] = {}
    for c in finding.rule.comparisons:
        if isinstance(c.right, str):
            continue
        m = finding.metric if c.left in PARTS else next(s for s in finding.secondary if c.left.startswith(s + "_"))
        if c.right not in out.setdefault(m, []):
            out[m].append(float(c.right))
    return out


def verdict_text(reproduced: bool | None, comparisons: list[dict], reasons: dict | None = None,
                 finding: PreRegistered | None = None) -> str:
    """'reproduced', 'not reproduced', or 'not measured: X (why)' naming the metrics whose values were missing."""
    if reproduced is True:
        return "reproduced"
    if reproduced is False:
        return "not reproduced"
    reasons = reasons or {}
    metrics = []
    for name in missing_names(comparisons):
        m = name
        for p in PARTS:
            if name == p and finding is not None:
                m = finding.metric
            elif name.endswith("_" + p):
                m = name[:-len(p) - 1]
        if m not in metrics:
            metrics.append(m)
    return "not measured: " + "; ".join(f"{m} ({reasons[m]})" if reasons.get(m) else m for m in metrics)


# ---- pooling across seeds -------------------------------------------------------------------------------
def _leaves(x, path=()):
    """(path, array) of every array to resample, in a fixed order (dict keys sorted)."""
    if isinstance(x, np.ndarray):
        yield path, x
    elif isinstance(x, dict):
        for k in sorted(x):
            yield from _leaves(x[k], path + (k,))
    elif isinstance(x, (list, tuple)):
        for i, v in enumerate(x):
            yield from _leaves(v, path + (i,))


def _default_metric(x) -> float:
    if isinstance(x, np.ndarray):
        return float(np.mean(x))
    if isinstance(x, (int, float, np.floating, np.integer)):
        return float(x)
    raise FindingsError("pool needs a metric for per-seed values that are neither a number nor an array.")


INTERVAL_TEXT = {"stratified_bootstrap": "stratified bootstrap: seeds, then units within each seed",
                 "t_over_seeds": "Student's t over the per-seed values",
                 "within_seed": "one seed: bootstrap of its units"}


def pool_metrics(per_seed: dict, metrics: dict[str, Callable], *, seed: int = 0, n_boot: int = N_BOOT,
                 level: float = LEVEL, interval: str = "stratified_bootstrap") -> dict[str, dict]:
    """Every metric pooled: {name: {estimate, ci_low, ci_high, n_seeds, per_seed}}. per_seed: {training seed: that
    seed's raw values}; metrics: {name: metric(raw values of one seed) -> float}. interval "stratified_bootstrap"
    (registration 1): the CI of every metric from the same two-stage resamples; a metric that is NaN on a resample
    (e.g. a ratio over a zero mean) leaves that resample out. "t_over_seeds": the CI is Student's t over the per-seed
    values (one seed: its within-seed bootstrap), and each entry adds "interval" (the method), "per_seed_ci" {seed:
    [low, high]} (each seed's within-seed bootstrap, the same resamples for every metric) and "iqm" {iqm, ci_low,
    ci_high} over the seeds (rliable's aggregate). `conclude` adds "profile" (stats.performance_profile over the
    seeds at the rule's thresholds) to the metrics its rule compares with numbers."""
    if not per_seed:
        raise FindingsError("pool needs at least one seed's values.")
    if interval not in INTERVAL_TEXT or interval == "within_seed":
        raise FindingsError(f"the across-seed interval must be stratified_bootstrap or t_over_seeds, got '{interval}'.")
    seeds = sorted(per_seed)
    raws = [per_seed[s] for s in seeds]
    point = {name: {s: float(fn(r)) for s, r in zip(seeds, raws)} for name, fn in metrics.items()}
    n = len(seeds)
    if interval == "stratified_bootstrap":
        cis = stratified_bootstrap_ci(raws, metrics, n_boot=n_boot, level=level, seed=seed)
        return {name: {"estimate": float(np.mean(list(point[name].values()))), "ci_low": cis[name][0],
                       "ci_high": cis[name][1], "n_seeds": n, "per_seed": point[name]} for name in metrics}
    within = {s: stratified_bootstrap_ci([r], metrics, n_boot=n_boot, level=level, seed=seed)
              for s, r in zip(seeds, raws)}
    out = {}
    for name in metrics:
        values = np.array(list(point[name].values()))
        est, lo, hi = t_interval(values, level=level)
        if n == 1:
            lo, hi = within[seeds[0]][name]
        out[name] = {"estimate": float(est), "ci_low": float(lo), "ci_high": float(hi), "n_seeds": n,
                     "per_seed": point[name], "interval": "t_over_seeds" if n > 1 else "within_seed",
                     "per_seed_ci": {s: [float(v) for v in within[s][name]] for s in seeds},
                     "iqm": iqm_ci(values, n_boot=n_boot, level=level, seed=seed) if np.isfinite(values).all() else None}
    return out


def pool(per_seed: dict, metric: Callable | None = None, seed: int = 0, *, n_boot: int = N_BOOT,
         level: float = LEVEL, interval: str = "stratified_bootstrap") -> dict:
    """One metric pooled across seeds: {estimate (mean of the per-seed metric), ci_low, ci_high (stratified
    bootstrap: seeds, then units within each seed), n_seeds, per_seed}. metric defaults to the mean of an array
    (or the number itself)."""
    return pool_metrics(per_seed, {"m": metric or _default_metric}, seed=seed, n_boot=n_boot, level=level,
                        interval=interval)["m"]


# ---- seed files -----------------------------------------------------------------------------------------
def encode_raw(x):
    """Raw values as JSON: an array to resample -> {"resampled": nested lists} (NaN -> null); numbers, strings,
    lists and dicts as they are (NaN -> null)."""
    if isinstance(x, np.ndarray):
        return {"resampled": [_clean(v) for v in x.astype(float).tolist()]}
    if isinstance(x, dict):
        return {str(k): encode_raw(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [encode_raw(v) for v in x]
    return _clean(x)


def _clean(v):
    if isinstance(v, list):
        return [_clean(x) for x in v]
    if isinstance(v, (float, np.floating)):
        return float(v) if math.isfinite(v) else None
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, np.bool_):
        return bool(v)
    return v


def decode_raw(x):
    """The inverse of encode_raw: {"resampled": ...} -> a float array (null -> NaN)."""
    if isinstance(x, dict):
        if set(x) == {"resampled"}:
            return np.array([np.nan if v is None else v for v in x["resampled"]] if x["resampled"] and not
                            isinstance(x["resampled"][0], list) else _nan_rows(x["resampled"]), dtype=float)
        return {k: decode_raw(v) for k, v in x.items()}
    if isinstance(x, list):
        return [decode_raw(v) for v in x]
    return x


def _nan_rows(rows):
    return [_nan_rows(r) if isinstance(r, list) else (np.nan if r is None else r) for r in rows]


def seed_file(directory, seed: int) -> Path:
    return Path(directory) / f"seed{int(seed)}.json"


def write_seed_file(directory, seed: int, findings: dict, command: str, quick: bool, agents: str = "",
                    extra: dict | None = None, code_commit: str | None = None, checkpoints: dict | None = None,
                    hashes: dict | None = None) -> Path:
    """directory/seed<k>.json: {format, seed, command, created, quick, agents, findings_toml {commit, date},
    code_commit (git HEAD, '+dirty' when it had changes), checkpoints {agent: sha256 of its checkpoint}, hashes
    {code, recipes: {finding: sha256}} (analysis/research/registration.py), findings: {id: {raw, not_measured,
    numbers, agents}}}; findings: {id: {"raw": ..., "not_measured": {...}, "numbers": ..., "agents": [names]}}."""
    commit = last_commit()
    doc = {"format": SEED_FORMAT, "seed": int(seed), "command": command,
           "created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "quick": bool(quick), "agents": agents,
           "findings_toml": {"commit": commit[0], "date": commit[1]} if commit else None, **(extra or {}),
           "code_commit": code_commit, "checkpoints": dict(checkpoints or {}), "hashes": hashes,
           "findings": {fid: {"raw": encode_raw(v.get("raw", {})), "not_measured": dict(v.get("not_measured", {})),
                              "numbers": _clean_tree(v.get("numbers", {})), "agents": list(v.get("agents", []))}
                        for fid, v in findings.items()}}
    path = seed_file(directory, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=1, allow_nan=False) + "\n")
    tmp.replace(path)
    return path


def _clean_tree(x):
    if isinstance(x, dict):
        return {str(k): _clean_tree(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean_tree(v) for v in x]
    if isinstance(x, np.ndarray):
        return _clean_tree(x.tolist())
    return _clean(x)


def read_seed_file(path) -> dict:
    """One seed file, checked: {seed, command, quick, findings: {id: {raw (decoded), not_measured, numbers}}, ...}."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise FindingsError(f"{path} cannot be read as JSON: {e}.") from None
    if not isinstance(doc, dict) or doc.get("format") not in SEED_FORMATS:
        raise FindingsError(f"{path} is not a seed result file (format '{SEED_FORMAT}').")
    m = re.fullmatch(r"seed(\d+)\.json", path.name)
    if not m or doc.get("seed") != int(m.group(1)):
        raise FindingsError(f"{path} holds seed {doc.get('seed')!r}, but its name says otherwise (seed<k>.json).")
    fs = doc.get("findings")
    if not isinstance(fs, dict) or not all(isinstance(v, dict) and "raw" in v for v in fs.values()):
        raise FindingsError(f"{path}: findings must map each finding id to {{raw, not_measured, numbers}}.")
    if doc["format"] != SEED_FORMATS[0]:
        _check_checkpoints(path, doc)
    doc["findings"] = {k: {"raw": decode_raw(v["raw"]), "not_measured": dict(v.get("not_measured") or {}),
                           "numbers": v.get("numbers", {}), "agents": list(v.get("agents") or [])} for k, v in fs.items()}
    return doc


def _check_checkpoints(path: Path, doc: dict) -> None:
    """A format-2 seed file names the sha256 of every checkpoint its findings used: one sentence when one is missing."""
    cps = doc.get("checkpoints")
    if not isinstance(cps, dict) or not all(isinstance(h, str) and _SHA.match(h) for h in cps.values()):
        raise FindingsError(f"{path.name}: checkpoints must map each agent to its checkpoint's sha256 (64 hex digits).")
    for fid, v in doc["findings"].items():
        for a in v.get("agents") or []:
            if a not in cps:
                raise FindingsError(f"{path.name}: finding '{fid}' was measured on {a}, but the file records no "
                                    f"checkpoint sha256 for it; a seed file names every checkpoint its numbers come from.")


def read_seed_files(directory, quick: bool | None = None, skip=(), log: Callable[[str], None] | None = None) -> dict[int, dict]:
    """{seed: read_seed_file(...)} for every seed<k>.json in `directory` (none: {}). Files made with a different
    --quick than `quick` and seeds in `skip` are left out, each with a line to `log`."""
    d = Path(directory)
    if not d.is_dir():
        return {}
    out = {}
    for p in sorted(d.glob("seed*.json"), key=lambda p: (len(p.name), p.name)):
        if not re.fullmatch(r"seed\d+\.json", p.name):
            continue
        doc = read_seed_file(p)
        if doc["seed"] in skip:
            if log:
                log(f"{p}: seed {doc['seed']} is measured live here; the file is not used")
            continue
        if quick is not None and bool(doc.get("quick")) != bool(quick):
            if log:
                log(f"{p}: made {'with' if doc.get('quick') else 'without'} --quick; not pooled with this run")
            continue
        out[doc["seed"]] = doc
    return out


# ---- one finding, all seeds -----------------------------------------------------------------------------
@dataclass
class Pooled:
    """A finding's metrics pooled across seeds, with the verdict of its rule."""

    pooled: dict = field(default_factory=dict)            # metric -> pool result (headline, secondaries, extras)
    not_measured: dict = field(default_factory=dict)      # metric -> why (no seed measured it)
    reproduced: bool | None = None
    comparisons: list = field(default_factory=list)
    verdict: str = ""


def conclude(finding: PreRegistered, per_seed: dict[int, Any], metrics: dict[str, Callable],
             not_measured: dict[int, dict] | None = None, *, seed: int = 0, n_boot: int = N_BOOT,
             level: float = LEVEL, interval: str = "stratified_bootstrap") -> Pooled:
    """Pool every metric (the finding's headline and secondaries, and any extra rows) over the seeds that measured
    it, then apply the rule. per_seed: {seed: raw values}; metrics: {name: metric(raw) -> float}; not_measured:
    {seed: {metric: why}}. Metrics measured by the same seeds share their resamples."""
    not_measured = not_measured or {}
    for m in finding.metrics:
        if m not in metrics:
            raise FindingsError(f"finding '{finding.id}' declares the metric '{m}', which nothing computes.")
    groups: dict[tuple, dict] = {}
    missing = {}
    not_measured = {s: dict(not_measured.get(s, {})) for s in per_seed}
    for s, raw in per_seed.items():      # a seed file made before a metric existed lacks its values
        for name, fn in metrics.items():
            if name not in not_measured[s]:
                try:
                    fn(raw)
                except KeyError as e:
                    not_measured[s][name] = f"seed {s}'s values lack {e}"
    for name, fn in metrics.items():
        seeds = tuple(s for s in sorted(per_seed) if name not in not_measured.get(s, {}))
        if not seeds:
            why = [not_measured[s][name] for s in sorted(per_seed) if name in not_measured.get(s, {})]
            missing[name] = why[0] if why else "no seed measured it"
            continue
        groups.setdefault(seeds, {})[name] = fn
    pooled = {}
    for seeds, fns in groups.items():
        pooled.update(pool_metrics({s: per_seed[s] for s in seeds}, fns, seed=seed, n_boot=n_boot, level=level,
                                   interval=interval))
    pooled = {name: pooled[name] for name in metrics if name in pooled}
    if interval == "t_over_seeds":
        for m, taus in rule_thresholds(finding).items():
            if m in pooled and np.isfinite(list(pooled[m]["per_seed"].values())).all():
                pooled[m]["profile"] = performance_profile(list(pooled[m]["per_seed"].values()), taus, n_boot=n_boot,
                                                           level=level, seed=seed)
    ok, comparisons = verdict(finding, rule_values(finding, pooled))
    reasons = {**{m: "its value is not a number" for m, p in pooled.items()
                  if not all(_measured(p[k]) for k in PARTS)}, **missing}
    return Pooled(pooled, missing, ok, comparisons, verdict_text(ok, comparisons, reasons, finding))
