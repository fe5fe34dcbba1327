"""The README's findings table, generated from docs/report/findings.json (issue 24, item 8: never hand-written).
`python cli.py findings-table --write` rewrites the README between BEGIN and END; tests/test_report_guard.py checks
that the README holds exactly what this module makes from the committed findings.json."""
from __future__ import annotations

import json
import math
from pathlib import Path

from analysis.research.findings import ROOT, FindingsError

BEGIN = "<!-- findings-table: generated from docs/report/findings.json by `python cli.py findings-table --write`; do not edit -->"
END = "<!-- /findings-table -->"
FINDINGS_JSON = ROOT / "docs" / "report" / "findings.json"
README = ROOT / "README.md"


def _num(x) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    a = abs(float(x))
    return f"{x:.3g}" if a < 1e-3 or a >= 1e4 else f"{x:.3f}" if a < 10 else f"{x:.1f}"


def _pooled(p: dict | None) -> str:
    if not p or p.get("estimate") is None:
        return "not measured"
    return f"{_num(p['estimate'])} [{_num(p['ci_low'])}, {_num(p['ci_high'])}]"


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def table(doc: dict) -> str:
    """The Markdown table (and the line above it) for a findings.json document."""
    fs = doc.get("findings")
    if not isinstance(fs, list) or not fs:
        raise FindingsError("findings.json has no findings to put in the README's table.")
    seeds = sorted({f.get("n_seeds", 0) for f in fs})
    methods = sorted({(f.get("interval") or {}).get("method", "stratified_bootstrap") for f in fs})
    level = next(((f.get("interval") or {}).get("level") for f in fs if f.get("interval")), 0.95)
    lines = [f"Pooled over {' / '.join(map(str, seeds))} training seed{'s' if seeds != [1] else ''} "
             f"({', '.join(m.replace('_', ' ') for m in methods)} {level:.0%} CIs):", "",
             "| finding | setting | headline metric (pooled) | secondary metrics | target (findings.toml) | verdict |",
             "|---|---|---|---|---|---|"]
    for f in fs:
        sec = "; ".join(f"`{m}` {_pooled(p)}" for m, p in (f.get("secondary") or {}).items())
        verdict = f.get("verdict") or {True: "reproduced", False: "not reproduced"}.get(f.get("reproduced"), "reported")
        lines.append(f"| {_cell(f.get('title') or f['id'].replace('_', ' '))} | {_cell(f.get('setting') or '—')} | "
                     f"`{f.get('metric', '?')}` {_pooled(f)} | {_cell(sec or '—')} | {_cell(f.get('target', '—'))} | "
                     f"{verdict if verdict == 'reproduced' else f'**{_cell(verdict)}**'} |")
    return "\n".join(lines) + "\n"


def render(readme_text: str, doc: dict) -> str:
    """readme_text with the part between BEGIN and END replaced by table(doc); one sentence when the markers are
    missing or out of order."""
    a, b = readme_text.find(BEGIN), readme_text.find(END)
    if a < 0 or b < 0 or b < a:
        raise FindingsError(f"the README lacks the findings-table markers ({BEGIN} ... {END}) in that order.")
    return readme_text[:a + len(BEGIN)] + "\n" + table(doc) + readme_text[b:]


def load(path=FINDINGS_JSON) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise FindingsError(f"{path} cannot be read as findings.json: {e}.") from None


def write(readme=README, findings_json=FINDINGS_JSON) -> bool:
    """Rewrite the README's table; True when it changed."""
    readme = Path(readme)
    old = readme.read_text(encoding="utf-8")
    new = render(old, load(findings_json))
    if new != old:
        readme.write_text(new, encoding="utf-8")
    return new != old
