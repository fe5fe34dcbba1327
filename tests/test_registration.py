"""Registration that binds (issue 24, item 7) and the across-seed machinery (item 6): findings.toml's [registration]
checked and written, hashes that move when code or recipes move, what the report says, seed files format 2, the
finding-module registry, per-seed evaluation seeds and t intervals over seeds."""
import json
import subprocess
import sys

import numpy as np
import pytest

from analysis.research import registration as RG
from analysis.research import reproduce as RP
from analysis.research.findings import (FindingsError, conclude, load_findings, pool_metrics, read_seed_file,
                                        write_seed_file)
from analysis.core.stats import t_interval
from test_findings import GOOD, _write

SHA = "ab" * 32


def _reg_table(**over):
    code = over.pop("code", {"f1": SHA})
    recipes = over.pop("recipes", {"f1": SHA})
    fields = {"version": 2, "previous_commit": '"eaca646"', "disclosures": '["the metric moved"]', **over}
    return ("\n[registration]\n" + "\n".join(f"{k} = {v}" for k, v in fields.items()) + "\n\n[registration.code]\n"
            + "".join(f'{k} = "{v}"\n' for k, v in code.items()) + "\n[registration.recipes]\n"
            + "".join(f'{k} = "{v}"\n' for k, v in recipes.items()))


def test_a_registration_table_loads_and_registration_1_has_none(tmp_path):
    reg = load_findings(_write(tmp_path, GOOD + _reg_table()))
    assert reg.registration["version"] == 2 and reg.registration["code"] == {"f1": SHA}
    assert reg.registration["disclosures"] == ["the metric moved"] and reg.registration["previous_commit"] == "eaca646"
    assert load_findings(_write(tmp_path, GOOD)).registration is None
    assert (reg.interval, reg.reset_seeds) == ("stratified_bootstrap", "offset")   # registration 1's behaviour


@pytest.mark.parametrize("table, says", [
    (_reg_table(version=1), "version must be 2 or more"),
    (_reg_table(code={"f1": "xyz"}), "must be a sha256"),
    (_reg_table(code={'"f 1"': SHA}), "'f 1' is not a finding id"),
    (_reg_table(disclosures='["", "x"]'), "disclosures must be a list of non-empty strings"),
    (_reg_table(signed_by='"me"'), "unknown field 'signed_by'"),
    (_reg_table(version='"two"'), "version must be an integer"),
    ("\n[registration]\nversion = 2\n", "lacks 'code'"),
])
def test_a_malformed_registration_is_one_sentence(tmp_path, table, says):
    with pytest.raises(FindingsError, match=says) as e:
        load_findings(_write(tmp_path, GOOD + table))
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("meta, says", [('interval = "bca"', "interval must be one of stratified_bootstrap, t_over_seeds"),
                                        ('reset_seeds = "seed_plus_i"', "reset_seeds must be one of offset, stream")])
def test_meta_choices_are_checked(tmp_path, meta, says):
    with pytest.raises(FindingsError, match=says):
        load_findings(_write(tmp_path, GOOD.replace("ci_level = 0.95", f"ci_level = 0.95\n{meta}")))
    ok = load_findings(_write(tmp_path, GOOD.replace("ci_level = 0.95", 'ci_level = 0.95\ninterval = "t_over_seeds"\nreset_seeds = "stream"')))
    assert (ok.interval, ok.reset_seeds) == ("t_over_seeds", "stream")


def test_hashes_move_with_a_byte_of_code_or_a_recipe_field(tmp_path):
    (tmp_path / "a.py").write_text("x = 1\n")
    h = RG.code_hash(["a.py"], tmp_path)
    assert h == RG.code_hash(["a.py"], tmp_path) and len(h) == 64
    (tmp_path / "a.py").write_text("x = 1  # why\n")
    assert RG.code_hash(["a.py"], tmp_path) != h
    assert RG.code_hash(["missing.py"], tmp_path) != RG.code_hash(["a.py"], tmp_path)
    recipes = {"a": {"steps": 2000, "lr": 1e-3}, "b": {"steps": 10}}
    r = RG.recipe_hash(["a", "b"], recipes)
    assert r == RG.recipe_hash(["a", "b"], {"b": {"steps": 10}, "a": {"lr": 1e-3, "steps": 2000}})   # key order
    assert r != RG.recipe_hash(["a", "b"], {**recipes, "a": {"steps": 2001, "lr": 1e-3}})
    assert r != RG.recipe_hash(["a"], recipes)
    (tmp_path / "ck").mkdir()
    (tmp_path / "ck" / "config.json").write_text("{}")
    (tmp_path / "ck" / "model.safetensors").write_bytes(b"\0" * 8)
    c = RG.checkpoint_hash(tmp_path / "ck")
    (tmp_path / "ck" / "model.safetensors").write_bytes(b"\0" * 7 + b"\1")
    assert RG.checkpoint_hash(tmp_path / "ck") != c


def test_register_writes_a_table_that_reads_back_and_reports_changes(tmp_path, monkeypatch):
    """The repository's four findings in a temporary copy of findings.toml: register pins this checkout's hashes;
    a moved recipe is then named in 'changed since registration'; a second register is version 3."""
    path = tmp_path / "findings.toml"
    path.write_text((RG.ROOT / "findings.toml").read_text())
    reg0 = load_findings(path)
    files_of = lambda fid: RP.finding_module(fid).files   # noqa: E731
    now = lambda reg: RG.current_hashes(reg, {f.id: files_of(f.id) for f in reg.findings})   # noqa: E731
    assert RG.changes(reg0, now(reg0)) == ["findings.toml has no [registration] table (registration 1 pinned no code or recipe hashes)"]
    out = RG.register(files_of, path, previous_commit="eaca646")
    reg = load_findings(path)
    assert out["version"] == 2 and reg.registration["previous_commit"] == "eaca646"
    assert reg.registration["code"] == now(reg)["code"] and RG.changes(reg, now(reg)) == []
    assert reg.registration["disclosures"] == list(RG.DISCLOSURES_V2)
    assert any("Key-to-Door metric switch" in d for d in reg.registration["disclosures"])
    md = "\n".join(RG.report_lines(reg, now(reg)))
    assert "**Changed since registration:** nothing." in md and "Version 2, replacing the registration of commit eaca646" in md
    from models import recipes
    moved = {**recipes.SAMPLE_AGENTS, "keydoor-dt": {**recipes.SAMPLE_AGENTS["keydoor-dt"], "steps": 1}}
    monkeypatch.setattr(recipes, "SAMPLE_AGENTS", moved)
    assert RG.changes(reg, now(reg)) == ["the recipes of key_to_door (keydoor-dt, keydoor-dt-k1, keydoor-mlp)"]
    assert "**Changed since registration:** the recipes of key_to_door" in "\n".join(RG.report_lines(reg, now(reg)))
    j = RG.registration_json(reg, now(reg))
    assert j["version"] == 2 and j["changed_since_registration"] == RG.changes(reg, now(reg))
    assert RP.finding_module("key_to_door").files[0] == "analysis/research/reproduce.py"
    monkeypatch.undo()
    assert RG.register(files_of, path)["version"] == 3
    text = path.read_text()
    assert text.count("[registration]") == 1 and text.count(RG.MARKER) == 1
    assert load_findings(path).registration["disclosures"] == list(RG.DISCLOSURES_V2)   # kept from the table
    first = text[text.index("[[finding]]"):text.index("[[finding]]", text.index("[[finding]]") + 1)]
    late = first.replace('id = "return_conditioning"', 'id = "late"')
    path.write_text(text + "\n" + late)
    with pytest.raises(FindingsError, match="a \\[\\[finding\\]\\] follows the \\[registration\\] table"):
        RG.register(files_of, path)
    # a finding added above the table after registration: named in the changes, then pinned by the next register
    head = text[:text.index(RG.MARKER)]
    path.write_text(head + late + "\n" + text[text.index(RG.MARKER):])
    reg = load_findings(path)
    files = {f.id: files_of(f.id if f.id != "late" else "return_conditioning") for f in reg.findings}
    assert RG.changes(reg, RG.current_hashes(reg, files)) == ["the finding late (added after registration: no hashes pinned)"]
    assert RG.register(lambda fid: files[fid], path)["version"] == 4 and set(load_findings(path).registration["code"]) == set(files)
    reg = load_findings(path, path.read_text().replace(late, ""))
    assert RG.changes(reg, RG.current_hashes(reg, files)) == ["the finding late (registered, no longer in findings.toml)"]


def test_cli_register_is_one_sentence_on_bad_input(tmp_path):
    res = subprocess.run([sys.executable, "cli.py", "register", "--findings", str(tmp_path / "none.toml")], cwd=RG.ROOT,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "does not exist" in res.stderr


# ---- seed files, format 2 --------------------------------------------------------------------------------------
def test_a_seed_file_records_commit_and_checkpoints_and_names_a_missing_one(tmp_path):
    results = {"f1": {"raw": {"x": np.arange(3.0)}, "agents": ["a", "b"]}}
    p = write_seed_file(tmp_path, 2, results, "cmd", quick=False, code_commit="c" * 40,
                        checkpoints={"a": SHA, "b": SHA}, hashes={"code": {"f1": SHA}, "recipes": {"f1": SHA}})
    doc = read_seed_file(p)
    assert doc["format"] == "seqlens-seed-results/2" and doc["code_commit"] == "c" * 40
    assert doc["checkpoints"] == {"a": SHA, "b": SHA} and doc["findings"]["f1"]["agents"] == ["a", "b"]
    raw = json.loads(p.read_text())
    del raw["checkpoints"]["b"]
    p.write_text(json.dumps(raw))
    with pytest.raises(FindingsError, match="measured on b, but the file records no checkpoint sha256") as e:
        read_seed_file(p)
    assert "\n" not in str(e.value)
    raw["checkpoints"]["b"] = "not a hash"
    p.write_text(json.dumps(raw))
    with pytest.raises(FindingsError, match="must map each agent to its checkpoint's sha256"):
        read_seed_file(p)
    old = {**raw, "format": "seqlens-seed-results/1"}          # the committed seeds 1-4: read as before, unchecked
    p.write_text(json.dumps(old))
    assert read_seed_file(p)["seed"] == 2


def test_a_seed_file_from_another_commit_is_one_sentence():
    current = {"code": {"f1": SHA, "f2": "cd" * 32}, "recipes": {"f1": SHA, "f2": SHA}}
    doc = {"seed": 3, "code_commit": "a" * 40, "hashes": {"code": {"f1": SHA, "f2": SHA}, "recipes": {"f1": SHA, "f2": SHA}}}
    note = RG.seed_file_note(doc, current, head="b" * 40)
    assert note == f"seed3.json was made at code commit {'a' * 12}, not this checkout's {'b' * 12}; since then the code of f2 changed"
    assert RG.seed_file_note({**doc, "hashes": {"code": current["code"], "recipes": current["recipes"]}}, current,
                             head="b" * 40).endswith("the findings' code and recipes hash the same")
    assert RG.seed_file_note(doc, current, head="a" * 40) is None
    assert "records no code commit" in RG.seed_file_note({"seed": 1}, current, head="b" * 40)


# ---- the finding modules ---------------------------------------------------------------------------------------
def test_every_registered_finding_has_a_module_and_a_module_is_one_line(tmp_path, monkeypatch):
    mods = RP.finding_modules()
    assert list(mods)[:4] == ["return_conditioning", "context_pomdp", "key_to_door", "compounding_error"]
    assert all(m.setting for m in mods.values())
    assert all(mods[f].files[0] == "analysis/research/reproduce.py" for f in list(mods)[:4])   # the four built in
    assert {f: mods[f].files[0] for f in list(mods)[4:]} == {p.rsplit(".", 1)[1]: p.replace(".", "/") + ".py"
                                                             for p in RP.MODULES}   # each module: its own file first
    import sys
    pkg = tmp_path / "extra_findings"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "toy.py").write_text("SETTING = 'fully observed'\nMETRICS = {'m': lambda raw: float(raw['x'])}\n"
                                "def measure(load, datasets, seed, quick):\n    return ('measured', seed, quick)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(RP, "MODULES", ("extra_findings.toy",))
    m = RP.finding_module("toy")
    assert m.measure(None, None, 7, True) == ("measured", 7, True) and m.metrics({})["m"]({"x": 2}) == 2.0
    assert m.files[0] == "extra_findings/toy.py" and m.setting == "fully observed" and m.paper_value["value"] is None
    with pytest.raises(FindingsError, match="no module measures it; add analysis/research/nothing.py"):
        RP.finding_module("nothing")
    sys.modules.pop("extra_findings.toy", None)


def test_evaluation_seeds_are_drawn_per_training_seed_and_finding():
    assert RP.evaluation_seed("key_to_door", 3, 3, "offset") == 3            # registration 1: the seed itself
    base = {k: RP.evaluation_seed("return_conditioning", k, k, "stream") for k in range(20)}
    assert base == {k: RP.evaluation_seed("return_conditioning", k, k, "stream") for k in range(20)}   # reproducible
    starts = sorted(base.values())
    assert all(b - a > 10_000 for a, b in zip(starts, starts[1:])) and max(starts) < 2 ** 30   # no shared resets
    assert RP.evaluation_seed("key_to_door", 0, 0, "stream") != base[0]      # another finding, other start states


# ---- across-seed intervals --------------------------------------------------------------------------------------
def test_t_over_seeds_pooling_has_per_seed_cis_and_the_iqm():
    per_seed = {k: np.array([v, v + 1.0, v - 1.0]) for k, v in enumerate([1.0, 2.0, 3.0, 4.0, 10.0])}
    p = pool_metrics(per_seed, {"m": lambda r: float(np.mean(r))}, interval="t_over_seeds")["m"]
    est, lo, hi = t_interval([1.0, 2.0, 3.0, 4.0, 10.0])
    assert (p["estimate"], p["ci_low"], p["ci_high"]) == pytest.approx((est, lo, hi)) and p["interval"] == "t_over_seeds"
    assert p["iqm"]["iqm"] == pytest.approx(3.0)                              # 2, 3, 4 kept
    assert set(p["per_seed_ci"]) == set(range(5)) and all(c[0] < v < c[1] for c, v in
                                                          zip(p["per_seed_ci"].values(), [1, 2, 3, 4, 10]))
    one = pool_metrics({0: per_seed[0]}, {"m": lambda r: float(np.mean(r))}, interval="t_over_seeds")["m"]
    assert one["interval"] == "within_seed" and [one["ci_low"], one["ci_high"]] == one["per_seed_ci"][0]
    legacy = pool_metrics(per_seed, {"m": lambda r: float(np.mean(r))})["m"]
    assert set(legacy) == {"estimate", "ci_low", "ci_high", "n_seeds", "per_seed"}   # registration 1's fields, unchanged
    with pytest.raises(FindingsError, match="across-seed interval must be"):
        pool_metrics(per_seed, {"m": np.mean}, interval="bca")


def test_a_rule_reading_the_bound_fails_where_the_point_estimate_passes(tmp_path):
    """The reviewer's case: a Spearman whose mean is 0.96 but whose interval reaches 0.84 passes `estimate >= 0.9`
    and fails `ci_low >= 0.9`."""
    text = GOOD.replace('rule = "estimate >= 1.5 and ci_low > 1 and slope_estimate <= gap_ci_high"', 'rule = "ci_low >= 0.9"')
    spec = load_findings(_write(tmp_path, text)).get("f1")
    per_seed = {k: v for k, v in enumerate([0.98, 0.97, 0.99, 0.84, 1.0])}
    metrics = {"ratio": float, "slope": float, "gap": float}
    res = conclude(spec, per_seed, metrics, interval="t_over_seeds")
    assert res.pooled["ratio"]["estimate"] == pytest.approx(0.956) and res.pooled["ratio"]["ci_low"] < 0.9
    assert res.reproduced is False and res.comparisons[0]["left"] == "ci_low"


def test_the_rule_thresholds_give_a_performance_profile_over_seeds(tmp_path):
    text = GOOD.replace('rule = "estimate >= 1.5 and ci_low > 1 and slope_estimate <= gap_ci_high"',
                        'rule = "ci_low >= 0.9 and estimate > 0.5 and slope_ci_high < 2 and gap_estimate <= slope_estimate"')
    spec = load_findings(_write(tmp_path, text)).get("f1")
    from analysis.research.findings import rule_thresholds
    assert rule_thresholds(spec) == {"ratio": [0.9, 0.5], "slope": [2.0]}
    per_seed = {k: v for k, v in enumerate([0.98, 0.97, 0.99, 0.84, 0.4])}
    res = conclude(spec, per_seed, {"ratio": float, "slope": float, "gap": float}, interval="t_over_seeds")
    prof = res.pooled["ratio"]["profile"]
    assert prof["tau"] == [0.9, 0.5] and prof["profile"] == [0.6, 0.8] and prof["ci_low"][0] < 0.6 < prof["ci_high"][0]
    assert res.pooled["slope"]["profile"]["profile"] == [0.0] and "profile" not in res.pooled["gap"]
    assert "profile" not in conclude(spec, per_seed, {"ratio": float, "slope": float, "gap": float}).pooled["ratio"]


def test_reproduce_with_a_seed_file_lacking_a_checkpoint_is_one_sentence(tmp_path, monkeypatch, capsys):
    """`cli.py reproduce` pooling docs/report/seeds where a format-2 file names no checkpoint for an agent it used:
    exit 2 and one line, before any report is written."""
    import cli
    from analysis.research import pipeline, report
    from test_reproduce import _stub_run_all
    monkeypatch.setattr(RP, "run_all", _stub_run_all({0: 20}))
    monkeypatch.setattr(report, "write_figures", lambda figs, *a, **k: [])
    root = tmp_path / "root"
    seeds = root / "docs" / "report" / "seeds"
    write_seed_file(seeds, 1, {"context_pomdp": {"raw": {"k20": np.ones(2), "k1": np.ones(2), "gru": np.ones(2),
                                                          "mlp": np.ones(2)}, "agents": ["masked-cartpole-gru"]}},
                    "python cli.py reproduce --seed-list 1", quick=False, code_commit="c" * 40, checkpoints={})
    monkeypatch.setattr(pipeline, "ROOT", root)
    out = tmp_path / "out"
    assert cli.main(["reproduce", "--json", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "measured on masked-cartpole-gru, but the file records no checkpoint sha256" in err
    assert not (out / "report.md").exists()
