"""Guards (issue 24, item 8): the committed report equals a fresh `cli.py reproduce`, and the README's findings table
is the one generated from the committed findings.json."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from analysis.research import readme_table as T
from analysis.research.findings import FindingsError

ROOT = Path(__file__).resolve().parent.parent
TOL = 5e-4   # relative (absolute below 1): a fresh run on another machine's BLAS may differ in the last digits


def _leaves(x, path=()):
    if isinstance(x, dict):
        for k, v in x.items():
            yield from _leaves(v, path + (k,))
    elif isinstance(x, list):
        for i, v in enumerate(x):
            yield from _leaves(v, path + (i,))
    else:
        yield path, x


def differences(committed: list, fresh: list, tol: float = TOL) -> list[str]:
    """Every value of the committed findings that the fresh ones lack or differ in (numbers beyond tol x max(1, |v|));
    fields only the fresh run has (added since) are not compared."""
    out = []
    for path, v in _leaves(committed):
        w = fresh
        try:
            for p in path:
                w = w[p]
        except (KeyError, IndexError, TypeError):
            out.append(f"{path}: missing")
            continue
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            if isinstance(w, bool) or not isinstance(w, (int, float)) or abs(v - w) > tol * max(1.0, abs(v)):
                out.append(f"{path}: {v} -> {w}")
        elif v != w:
            out.append(f"{path}: {v!r} -> {w!r}")
    return out


def test_differences_catch_a_moved_number_a_flipped_verdict_and_a_missing_field():
    a = [{"id": "f", "estimate": 0.9, "ci": [0.8, 1.0], "verdict": "reproduced", "n": 5}]
    assert differences(a, [{**a[0], "estimate": 0.9003, "new": 1}]) == []
    assert differences(a, [{**a[0], "estimate": 0.901}]) == ["(0, 'estimate'): 0.9 -> 0.901"]
    assert differences(a, [{**a[0], "verdict": "not reproduced"}]) == ["(0, 'verdict'): 'reproduced' -> 'not reproduced'"]
    assert differences(a, [{k: v for k, v in a[0].items() if k != "ci"}]) == ["(0, 'ci', 0): missing", "(0, 'ci', 1): missing"]
    assert differences([{"x": 300.0}], [{"x": 300.1}]) == []          # relative above 1
    assert differences([{"x": 1}], [{"x": True}]) == ["(0, 'x'): 1 -> True"]


def test_the_committed_report_equals_a_fresh_reproduce(tmp_path):
    """`cli.py reproduce` as docs/report was made (the shipped seed 0 live, seeds 1-4 from docs/report/seeds): every
    value of the committed findings.json comes back within TOL."""
    res = subprocess.run([sys.executable, "cli.py", "reproduce", "--json", "--out", str(tmp_path)], cwd=ROOT,
                         capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr
    committed = json.loads((ROOT / "docs" / "report" / "findings.json").read_text())["findings"]
    fresh = json.loads(res.stdout)["findings"]
    assert [f["id"] for f in fresh][:len(committed)] == [f["id"] for f in committed]
    diff = differences(committed, fresh)
    assert not diff, f"{len(diff)} committed values changed, e.g. {diff[:5]}"


def test_the_readme_table_is_generated_from_the_committed_findings():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert T.render(readme, T.load()) == readme, "README's findings table is stale: run `python cli.py findings-table --write`"
    doc = T.load()
    rows = [r for r in T.table(doc).splitlines() if r.startswith("| ") and not r.startswith("| finding")]
    assert len(rows) == len(doc["findings"])
    for row, f in zip(rows, doc["findings"]):   # each row carries its finding's pooled headline and verdict
        verdict = f["verdict"] if f["verdict"] == "reproduced" else f"**{f['verdict']}**"
        assert f"`{f['metric']}` {T._num(f['estimate'])} [" in row and row.endswith(f"| {verdict} |")


def test_the_table_follows_the_json_and_bad_input_is_one_sentence(tmp_path):
    doc = {"findings": [{"id": "a_b", "metric": "m", "estimate": 1.23456, "ci_low": 1.0, "ci_high": 1.5, "n_seeds": 3,
                         "secondary": {"s": {"estimate": 0.5, "ci_low": None, "ci_high": 0.7}}, "target": "m >= 1",
                         "verdict": "not measured: s (no seed)", "reproduced": None, "setting": "POMDP",
                         "interval": {"method": "t_over_seeds", "level": 0.9}}]}
    t = T.table(doc)
    assert t.startswith("Pooled over 3 training seeds (t over seeds 90% CIs):")
    assert "| a b | POMDP | `m` 1.235 [1.000, 1.500] | `s` 0.500 [n/a, 0.700] | m >= 1 | **not measured: s (no seed)** |" in t
    with pytest.raises(FindingsError, match="lacks the findings-table markers"):
        T.render("no markers here", doc)
    with pytest.raises(FindingsError, match="has no findings"):
        T.table({"findings": []})
    (tmp_path / "f.json").write_text("{broken")
    with pytest.raises(FindingsError, match="cannot be read as findings.json"):
        T.load(tmp_path / "f.json")
    readme = tmp_path / "README.md"
    readme.write_text(f"top\n{T.BEGIN}\nold\n{T.END}\nbottom\n")
    (tmp_path / "f.json").write_text(json.dumps(doc))
    assert T.write(readme, tmp_path / "f.json") is True and T.write(readme, tmp_path / "f.json") is False
    text = readme.read_text()
    assert text.startswith(f"top\n{T.BEGIN}\nPooled over 3") and text.endswith(f"{T.END}\nbottom\n") and "old" not in text
