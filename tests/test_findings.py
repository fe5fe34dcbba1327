"""analysis/research/findings.py: findings.toml checked field by field, rules parsed without eval, verdicts on hand-made
values, pooling across seeds with known answers, last_commit, and the seed files round trip."""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from analysis.research import findings as FN
from analysis.research.findings import (FindingsError, changed_since_commit, conclude, last_commit, load_findings, parse_rule,
                                        pool, pool_metrics, read_seed_file, read_seed_files, verdict, verdict_text, write_seed_file)
from analysis.core.stats import bootstrap_ci

ROOT = Path(__file__).resolve().parent.parent

GOOD = """
[meta]
seeds = 5
ci_level = 0.95

[[finding]]
id = "f1"
paper = "A paper"
claim = "A claim."
agents = ["a", "b"]
split = "fresh episodes"
metric = "ratio"
secondary = ["slope", "gap"]
target = "ratio >= 1.5"
rule = "estimate >= 1.5 and ci_low > 1 and slope_estimate <= gap_ci_high"
"""


def _write(tmp_path, text) -> Path:
    p = tmp_path / "findings.toml"
    p.write_text(text)
    return p


# ---- rules ----------------------------------------------------------------------------------------------
def test_valid_rules_parse_into_comparisons():
    r = parse_rule("estimate >= 0.9 and slope_estimate<=1.5 and ci_low > -2e-1 and slope_ci_high == ci_high",
                   ["slope"])
    assert [c.text for c in r.comparisons] == ["estimate >= 0.9", "slope_estimate <= 1.5", "ci_low > -2e-1",
                                              "slope_ci_high == ci_high"]
    assert r.comparisons[2].right == -0.2
    assert r.names == ["estimate", "slope_estimate", "ci_low", "slope_ci_high", "ci_high"]
    assert parse_rule("ci_high < 0", []).comparisons[0].right == 0.0


@pytest.mark.parametrize("rule, says", [
    ("__import__('os').system('true')", "unexpected character '('"),
    ("estimate >= 1; import os", "unexpected character ';'"),
    ("", "is empty"),
    ("   ", "is empty"),
    ("estimate", "expected a comparison"),
    ("estimate >=", "expected a comparison"),
    ("estimate >= >= 1", "expected a comparison"),
    ("1 <= estimate", "expected a comparison"),
    ("estimate => 1", "unexpected character '='"),
    ("estimate != 1", "unexpected character '!'"),
    ("estimate = 1", "unexpected character '='"),
    ("estimate >= 1 or ci_low > 0", "got 'or'"),
    ("estimate >= 1 ci_low > 0", "got 'ci_low'"),
    ("estimate >= 1 and", "at the end"),
    ("estimate >= 1 and and ci_low > 0", "expected a comparison"),
    ("and >= 1", "expected a comparison"),
    ("(estimate >= 1)", "unexpected character '('"),
    ("estimate >= 1e", "expected 'and'"),
    ("foo_estimate >= 1", "names 'foo_estimate', which this finding does not declare"),
    ("estimate >= slope", "names 'slope'"),
    ("mean >= 1", "names 'mean'"),
])
def test_malformed_rules_are_one_sentence(rule, says):
    with pytest.raises(FindingsError) as e:
        parse_rule(rule, ["slope"])
    msg = str(e.value)
    assert says in msg and msg.endswith(".") and "\n" not in msg, msg


def test_a_rule_is_never_evaluated_as_python(monkeypatch):
    monkeypatch.setattr("builtins.eval", lambda *a, **k: pytest.fail("eval called"))
    monkeypatch.setattr("builtins.exec", lambda *a, **k: pytest.fail("exec called"))
    with pytest.raises(FindingsError):
        parse_rule("__import__('os')", [])
    ok, _ = verdict(_spec("estimate >= 1"), {"estimate": 2.0})
    assert ok is True


# ---- verdicts -------------------------------------------------------------------------------------------
def _spec(rule, secondary=("slope",)):
    class S:
        pass
    s = S()
    s.rule, s.metric, s.secondary, s.metrics = parse_rule(rule, secondary), "m", tuple(secondary), ["m", *secondary]
    return s


def test_verdicts_on_hand_made_values():
    s = _spec("estimate >= 0.9 and slope_estimate >= 0.5 and slope_estimate <= 1.5 and ci_low > ci_high")
    ok, comps = verdict(s, {"estimate": 0.95, "slope_estimate": 1.0, "ci_low": 2.0, "ci_high": 1.0})
    assert ok is True and all(c["holds"] for c in comps)
    assert comps[0] == {"comparison": "estimate >= 0.9", "left": "estimate", "left_value": 0.95, "op": ">=", "right": 0.9,
                        "right_value": 0.9, "holds": True}
    ok, comps = verdict(s, {"estimate": 0.95, "slope_estimate": 1.6, "ci_low": 2.0, "ci_high": 1.0})
    assert ok is False and [c["holds"] for c in comps] == [True, True, False, True]
    assert verdict_text(ok, comps) == "not reproduced"
    assert verdict(_spec("estimate == 1"), {"estimate": 1.0})[0] is True
    # a boundary value that float arithmetic lands a hair off counts as the boundary, either way
    from scipy.stats import spearmanr
    rho = float(spearmanr([1, 2, 3, 4, 5], [1, 2, 3, 5, 4]).statistic)     # exactly 0.9, computed 0.8999999999999999
    assert rho != 0.9 and verdict(_spec("estimate >= 0.9"), {"estimate": rho})[0] is True
    assert verdict(_spec("estimate > 0.9"), {"estimate": rho})[0] is False
    assert verdict(_spec("estimate >= 0.9"), {"estimate": 0.8999})[0] is False
    assert verdict(_spec("estimate < 0"), {"estimate": -1e-6})[0] is True


def test_a_missing_value_gives_no_verdict_and_says_what_is_missing():
    s = _spec("estimate >= 0.9 and slope_ci_low > 0")
    for values in ({"estimate": 0.95}, {"estimate": 0.95, "slope_ci_low": None}, {"estimate": 0.95, "slope_ci_low": float("nan")}):
        ok, comps = verdict(s, values)
        assert ok is None and comps[1]["holds"] is None and comps[0]["holds"] is True
        assert FN.missing_names(comps) == ["slope_ci_low"]
    # a missing value wins over a failing one: the rule cannot be decided
    ok, comps = verdict(s, {"estimate": 0.1})
    assert ok is None
    assert verdict_text(ok, comps, {"slope": "agent-x is not trained yet"}, s) == "not measured: slope (agent-x is not trained yet)"
    assert verdict_text(None, verdict(s, {})[1], {}, s) == "not measured: m; slope"


# ---- findings.toml --------------------------------------------------------------------------------------
def test_the_repos_findings_toml_loads_and_every_rule_names_declared_metrics():
    reg = load_findings(ROOT / "findings.toml")
    assert [f.id for f in reg.findings] == ["return_conditioning", "context_pomdp", "key_to_door", "compounding_error"]
    assert reg.meta["seeds"] == 5 and reg.level == 0.95
    for f in reg.findings:
        allowed = set(FN.rule_names(f.secondary))
        assert set(f.rule.names) <= allowed and f.rule.names
    from analysis.research.reproduce import METRICS
    for f in reg.findings:   # every declared metric is computed by analysis/research/reproduce.py
        assert set(f.metrics) <= set(METRICS[f.id]), f.id


def test_a_good_file_loads(tmp_path):
    reg = load_findings(_write(tmp_path, GOOD))
    f = reg.get("f1")
    assert f.agents == ("a", "b") and f.secondary == ("slope", "gap") and f.metrics == ["ratio", "slope", "gap"]
    assert len(f.rule.comparisons) == 3
    with pytest.raises(FindingsError, match="has no finding 'nope'; it has f1"):
        reg.get("nope")


@pytest.mark.parametrize("change, says", [
    (lambda t: t.replace('rule = "estimate', 'rule = "bogus'), "names 'bogus"),
    (lambda t: t.replace('rule = "estimate >= 1.5', 'rule = "eval(1)'), "unexpected character '('"),
    (lambda t: t.replace('id = "f1"\n', ''), "lacks the field 'id'"),
    (lambda t: t.replace('split = "fresh episodes"\n', ''), "lacks the field 'split'"),
    (lambda t: t + 'colour = "red"\n', "unknown field 'colour'"),
    (lambda t: t.replace('agents = ["a", "b"]', 'agents = "a"'), "agents must be a list of non-empty strings"),
    (lambda t: t.replace('agents = ["a", "b"]', 'agents = []'), "agents is empty"),
    (lambda t: t.replace('agents = ["a", "b"]', 'agents = ["a", "a"]'), "lists 'a' twice"),
    (lambda t: t.replace('secondary = ["slope", "gap"]', 'secondary = ["slope", 3]'), "secondary must be a list"),
    (lambda t: t.replace('secondary = ["slope", "gap"]', 'secondary = ["slope", "ratio"]'), "also listed as a secondary"),
    (lambda t: t.replace('secondary = ["slope", "gap"]', 'secondary = ["sl ope"]'), "is not a name"),
    (lambda t: t.replace('metric = "ratio"', 'metric = ""'), "metric must be a non-empty string"),
    (lambda t: t.replace('claim = "A claim."', 'claim = 3'), "claim must be a non-empty string"),
    (lambda t: t + t[t.index("[[finding]]"):], "two findings with the id 'f1'"),
    (lambda t: t.replace("seeds = 5", "seeds = 0"), "seeds must be at least 1"),
    (lambda t: t.replace("seeds = 5", 'seeds = "five"'), "seeds must be an integer"),
    (lambda t: t.replace("ci_level = 0.95", "ci_level = 95"), "ci_level must lie between 0 and 1"),
    (lambda t: t.replace("seeds = 5", "seeds = 5\nbudget = 3"), "[meta] has an unknown field 'budget'"),
    (lambda t: t.replace("[[finding]]", "[[findings]]"), "unknown top-level entry 'findings'"),
    (lambda t: t[:t.index("[[finding]]")], "has no [[finding]] tables"),
    (lambda t: t.replace('id = "f1"', 'id = "f1'), "is not valid TOML"),
])
def test_a_malformed_file_is_one_sentence(tmp_path, change, says):
    with pytest.raises(FindingsError) as e:
        load_findings(_write(tmp_path, change(GOOD)))
    msg = str(e.value)
    assert says in msg and "\n" not in msg, msg


def test_a_missing_file_is_one_sentence(tmp_path):
    with pytest.raises(FindingsError, match="does not exist"):
        load_findings(tmp_path / "findings.toml")


def test_last_commit_in_this_checkout_and_outside_one(tmp_path):
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    c = last_commit(ROOT / "findings.toml")
    assert c is not None and len(c[0]) >= 7 and int(c[0], 16) >= 0
    assert len(c[1]) == 10 and c[1][4] == "-" and c[1][7] == "-"
    p = _write(tmp_path, GOOD)                       # tmp_path is outside any checkout
    assert last_commit(p) is None and changed_since_commit(p) is None


# ---- pooling --------------------------------------------------------------------------------------------
def test_one_seed_gives_the_within_seed_bootstrap():
    x = np.random.default_rng(1).normal(size=23)
    p = pool({0: x}, seed=4)
    assert p["estimate"] == pytest.approx(x.mean()) and p["n_seeds"] == 1 and p["per_seed"] == {0: pytest.approx(x.mean())}
    assert (p["ci_low"], p["ci_high"]) == pytest.approx(bootstrap_ci(x, seed=4))


def test_identical_seeds_pool_to_the_within_seed_spread():
    """Seeds that agree add no between-seed spread: the interval is the within-seed bootstrap of the pooled mean
    (n independent within-seed resamples averaged, ~1/sqrt(n) of one seed's width); with no spread within a seed
    either, it is the point itself."""
    x = np.random.default_rng(2).normal(size=40)
    one = pool({0: x}, seed=0)
    four = pool({k: x for k in range(4)}, seed=0)
    assert four["estimate"] == pytest.approx(x.mean()) and four["n_seeds"] == 4
    assert one["ci_low"] < four["ci_low"] < x.mean() < four["ci_high"] < one["ci_high"]
    ratio = (four["ci_high"] - four["ci_low"]) / (one["ci_high"] - one["ci_low"])
    assert ratio == pytest.approx(0.5, abs=0.08)
    flat = pool({k: np.full(10, 3.0) for k in range(4)})
    assert (flat["estimate"], flat["ci_low"], flat["ci_high"]) == (3.0, 3.0, 3.0)
    scalars = pool({0: 1.0, 1: 1.0, 2: 1.0})
    assert (scalars["ci_low"], scalars["ci_high"]) == (1.0, 1.0)


def test_a_seed_with_higher_values_moves_the_estimate_by_its_share():
    rng = np.random.default_rng(3)
    per_seed = {k: rng.normal(size=30) for k in range(5)}
    base = pool(per_seed)["estimate"]
    moved = pool({**per_seed, 2: per_seed[2] + 10.0})
    assert moved["estimate"] - base == pytest.approx(10.0 / 5)
    assert moved["per_seed"][2] - per_seed[2].mean() == pytest.approx(10.0)
    # the between-seed spread now shows in the interval
    assert moved["ci_high"] - moved["ci_low"] > pool(per_seed)["ci_high"] - pool(per_seed)["ci_low"]


def test_scalar_seeds_are_resampled_as_seeds():
    p = pool({0: 1.0, 1: 3.0}, n_boot=4000)
    assert p["estimate"] == 2.0 and (p["ci_low"], p["ci_high"]) == (1.0, 3.0)


def test_the_metric_is_recomputed_per_resample_and_strata_stay_apart():
    """A ratio of means is recomputed on each resampled seed (not averaged per unit); dict entries are resampled
    independently, rows of a 2-D array together (paired)."""
    a, b = np.array([10.0, 20.0, 30.0]), np.array([1.0, 2.0, 3.0])
    seen = []

    def ratio(r):
        seen.append(r)
        return r["a"].mean() / r["b"].mean()

    p = pool({0: {"a": a, "b": b, "note": "fixed"}}, ratio, n_boot=50)
    assert p["estimate"] == pytest.approx(10.0)
    assert all(r["note"] == "fixed" for r in seen)
    assert any(not np.array_equal(np.argsort(r["a"]), np.argsort(r["b"])) or
               not np.allclose(r["a"], 10 * r["b"]) for r in seen[1:])        # a and b drawn apart
    paired = np.stack([a, b], 1)
    q = pool({0: paired}, lambda r: float(np.mean(r[:, 0] / r[:, 1])), n_boot=200)
    assert (q["estimate"], q["ci_low"], q["ci_high"]) == (10.0, 10.0, 10.0)  # rows stay paired: always exactly 10


def test_pooling_is_deterministic_and_metrics_share_resamples():
    rng = np.random.default_rng(7)
    per_seed = {k: rng.normal(size=(25, 2)) for k in range(3)}
    fns = {"first": lambda r: r[:, 0].mean(), "second": lambda r: r[:, 1].mean(),
           "diff": lambda r: (r[:, 0] - r[:, 1]).mean()}
    one, two = pool_metrics(per_seed, fns, seed=5), pool_metrics(per_seed, fns, seed=5)
    assert one == two
    assert pool_metrics(per_seed, fns, seed=6)["first"]["ci_low"] != one["first"]["ci_low"]
    assert one["diff"]["estimate"] == pytest.approx(one["first"]["estimate"] - one["second"]["estimate"])


def test_conclude_pools_the_seeds_that_measured_each_metric_and_applies_the_rule(tmp_path):
    spec = load_findings(_write(tmp_path, GOOD)).get("f1")
    metrics = {"ratio": lambda r: r["x"].mean(), "slope": lambda r: 1.0, "gap": lambda r: 2.0, "extra": lambda r: 5.0}
    per_seed = {0: {"x": np.full(5, 2.0)}, 1: {"x": np.full(5, 4.0)}}
    res = conclude(spec, per_seed, metrics, {1: {"extra": "not on seed 1"}})
    assert res.reproduced is True and res.verdict == "reproduced"
    assert res.pooled["ratio"]["estimate"] == 3.0 and res.pooled["ratio"]["n_seeds"] == 2
    assert res.pooled["extra"]["n_seeds"] == 1 and res.pooled["extra"]["per_seed"] == {0: 5.0}
    res = conclude(spec, per_seed, metrics, {0: {"gap": "agent b is not trained yet"}, 1: {"gap": "agent b is not trained yet"}})
    assert res.reproduced is None and res.not_measured == {"gap": "agent b is not trained yet"}
    assert res.verdict == "not measured: gap (agent b is not trained yet)"
    # a seed whose values lack what a metric reads (a file made before the metric existed): not measured there
    res = conclude(spec, {0: {"x": np.full(5, 2.0)}, 1: {"y": 1}}, metrics)
    assert res.pooled["ratio"]["per_seed"] == {0: 2.0} and res.pooled["slope"]["n_seeds"] == 2
    with pytest.raises(FindingsError, match="declares the metric 'gap', which nothing computes"):
        conclude(spec, per_seed, {"ratio": metrics["ratio"], "slope": metrics["slope"]})


# ---- seed files -----------------------------------------------------------------------------------------
def test_seed_files_round_trip(tmp_path):
    raw = {"success": {"dt": np.array([1.0, 0.0, 1.0]), "k1": np.array([0.0, np.nan])},
           "pairs": np.array([[1.0, 2.0], [3.0, np.nan]]), "targets": [1.0, 2.5], "range": [0, 10], "floor": 0.04,
           "per_target": [np.array([1.0, 2.0]), np.array([3.0])]}
    results = {"f1": {"raw": raw, "not_measured": {"gap": "b is not trained yet"}, "numbers": {"x": np.float64(1.5)}}}
    path = write_seed_file(tmp_path / "seeds", 3, results, "python cli.py reproduce --retrain --seeds 5", quick=False,
                           agents="trained with seed 3")
    assert path == tmp_path / "seeds" / "seed3.json"
    doc = json.loads(path.read_text())
    assert doc["format"] == FN.SEED_FORMAT and doc["seed"] == 3 and doc["command"].startswith("python cli.py reproduce")
    assert doc["findings"]["f1"]["raw"]["success"]["dt"] == {"resampled": [1.0, 0.0, 1.0]}
    back = read_seed_file(path)["findings"]["f1"]
    r = back["raw"]
    assert isinstance(r["pairs"], np.ndarray) and r["pairs"].shape == (2, 2) and np.isnan(r["pairs"][1, 1])
    np.testing.assert_array_equal(r["success"]["dt"], raw["success"]["dt"])
    assert np.isnan(r["success"]["k1"][1]) and r["targets"] == [1.0, 2.5] and r["floor"] == 0.04
    assert isinstance(r["per_target"][1], np.ndarray) and r["per_target"][1].tolist() == [3.0]
    assert back["not_measured"] == {"gap": "b is not trained yet"} and back["numbers"] == {"x": 1.5}
    metric = lambda v: float(np.mean(v["success"]["dt"]))   # noqa: E731
    assert pool({3: r}, metric) == pool({3: raw}, metric)   # the same pooled numbers from the file as from memory


def test_read_seed_files_filters_and_checks(tmp_path):
    d = tmp_path / "seeds"
    for k, quick in ((0, False), (1, False), (2, True)):
        write_seed_file(d, k, {"f": {"raw": {"x": np.arange(3.0)}}}, "cmd", quick=quick)
    (d / "notes.json").write_text("{}")
    lines = []
    got = read_seed_files(d, quick=False, skip={0}, log=lines.append)
    assert sorted(got) == [1] and len(lines) == 2
    assert "measured live" in lines[0] and "--quick" in lines[1]
    assert read_seed_files(tmp_path / "none") == {}
    (d / "seed1.json").write_text(json.dumps({**json.loads((d / "seed1.json").read_text()), "seed": 4}))
    with pytest.raises(FindingsError, match="holds seed 4"):
        read_seed_files(d)
    (d / "seed1.json").write_text("{not json")
    with pytest.raises(FindingsError, match="cannot be read as JSON"):
        read_seed_file(d / "seed1.json")
    (d / "seed1.json").write_text(json.dumps({"format": "other"}))
    with pytest.raises(FindingsError, match="is not a seed result file"):
        read_seed_file(d / "seed1.json")


def test_last_commit_is_the_one_that_changed_the_targets_not_a_comment(tmp_path):
    """A comment-only commit (the analysis/ split rewrote a path in one) must not move the pre-registration date."""
    import subprocess

    def git(*args):
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=tmp_path, check=True,
                       capture_output=True)

    def commit(text, message):
        (tmp_path / "findings.toml").write_text(text)
        git("add", "findings.toml")
        git("commit", "-q", "-m", message)
        return subprocess.run(["git", "log", "-1", "--format=%h"], cwd=tmp_path, capture_output=True,
                              text=True).stdout.strip()

    git("init", "-q")
    first = commit("# targets\n[f]\ntarget = 0.9\n", "targets")
    assert last_commit(tmp_path / "findings.toml")[0] == first
    commit("# targets, see analysis/research/findings.py\n[f]\ntarget = 0.9\n", "a comment")
    assert last_commit(tmp_path / "findings.toml")[0] == first
    moved = commit("# targets, see analysis/research/findings.py\n[f]\ntarget = 0.8\n", "a target")
    assert last_commit(tmp_path / "findings.toml")[0] == moved
    # changed_since_commit: False on the committed copy, True once the working copy differs (issue 24: it replaces
    # a check that accepted either answer)
    assert changed_since_commit(tmp_path / "findings.toml") is False
    (tmp_path / "findings.toml").write_text("[f]\ntarget = 0.7\n")
    assert changed_since_commit(tmp_path / "findings.toml") is True
