"""The reproduction report: Markdown and HTML beside figures as PNG and SVG (the dashboard's export code)."""
from __future__ import annotations

import html
import json
import math
from datetime import datetime, timezone
from pathlib import Path

from analysis.publish.export import versions, write_figures
from analysis.research.papers import papers_md


def _verdict(f) -> str:
    """The finding's verdict in words (bold when it did not reproduce or was not measured)."""
    if getattr(f, "verdict", ""):
        return f.verdict if f.reproduced is True else f"**{f.verdict}**"
    return {True: "reproduced", False: "**not reproduced**", None: "reported"}[f.reproduced]


def _fmt(x, d: int = 3) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    x = float(x)
    if x == 0:
        return "0"
    a = abs(x)
    if 100 <= a < 1e5:
        return f"{x:.1f}"
    return f"{x:.{d}f}" if 1e-3 <= a < 100 else f"{x:.{d}g}"


def _ci(p: dict | None) -> str:
    if p is None:
        return "not measured"
    return f"{_fmt(p['estimate'])} [{_fmt(p['ci_low'])}, {_fmt(p['ci_high'])}]"


def _interval_sentence() -> str:
    from analysis.research.reproduce import registry

    return {"stratified_bootstrap": "a stratified bootstrap: seeds, then episodes within each seed",
            "t_over_seeds": "Student's t over the per-seed values; each seed's own bootstrap CI beside its value, and "
                            "the IQM over seeds"}[registry().interval]


def _level() -> str:
    from analysis.research.reproduce import registry

    return f"{registry().level:.0%}"


def preregistration_line(path=None) -> str:
    """'Targets pre-registered in findings.toml, last changed in commit <hash> (<date>)' (or why not)."""
    from analysis.research.findings import ROOT, changed_since_commit, last_commit

    path = path or ROOT / "findings.toml"
    c = last_commit(path)
    if c is None:
        return ("Targets pre-registered in findings.toml; this copy is not in a git checkout, so the commit that last "
                "changed it cannot be shown.")
    line = f"Targets pre-registered in findings.toml, last changed in commit {c[0]} ({c[1]})"
    if changed_since_commit(path):
        line += "; the copy this report read differs from that commit (uncommitted changes)"
    return line + "."


def _seed_cell(p: dict, k) -> str:
    """One seed's value, with its within-seed CI when the pooling computed one."""
    v = _fmt(p["per_seed"].get(k))
    ci = (p.get("per_seed_ci") or {}).get(k)
    return v if ci is None else f"{v} [{_fmt(ci[0])}, {_fmt(ci[1])}]"


def _interval_text(p: dict) -> str:
    from analysis.research.findings import INTERVAL_TEXT

    return INTERVAL_TEXT[p.get("interval", "stratified_bootstrap")]


def registration_md() -> list[str]:
    """The registration paragraph (analysis/research/registration.py): pinned hashes, what changed, disclosures."""
    from analysis.research.registration import report_lines
    from analysis.research.reproduce import checkout_hashes, registry

    return report_lines(registry(), checkout_hashes())


def _finding_md(f) -> list[str]:
    """A finding's section: the pre-registration, the per-seed table, the pooled estimate, the rule and its verdict."""
    s = f.spec
    md = ["", f"## {f.title}", ""]
    if s is None:   # a finding without an entry in findings.toml (not one of the four)
        return md + [f"**Claim.** {f.claim}", "", f"**Measured.** {f.measured}.", "", f"**Verdict:** {_verdict(f)}.", ""]
    md += [f"**Claim.** {s.claim}", "", f"**Paper.** {s.paper}", "", f"**Metric.** `{s.metric}`"
           + (f"; secondary: {', '.join(f'`{m}`' for m in s.secondary)}" if s.secondary else "") + ".", "",
           f"**Split.** {s.split}.", "", f"**Agents.** {', '.join(s.agents)}.", "",
           f"**Target.** {s.target}.", "", f"**Rule.** `{s.rule.text}`", ""]
    cols = [m for m in s.metrics if m in f.pooled]
    seeds = sorted({k for m in cols for k in f.pooled[m]["per_seed"]})
    if cols:
        md += ["| seed | " + " | ".join(f"`{m}`" for m in cols) + " |", "|---" * (len(cols) + 1) + "|"]
        md += [f"| {k} | " + " | ".join(_seed_cell(f.pooled[m], k) for m in cols) + " |" for k in seeds]
        md += [f"| pooled ({len(seeds)} seed{'s' if len(seeds) != 1 else ''}) | "
               + " | ".join(_ci(f.pooled[m]) for m in cols) + " |", ""]
    head = f.pooled.get(s.metric)
    md += [f"**Pooled estimate.** `{s.metric}` = {_ci(head)}" + (
        f" (mean of {head['n_seeds']} seed{'s' if head['n_seeds'] != 1 else ''}; {_level()} CI: {_interval_text(head)})"
        if head else "") + (f"; IQM over seeds {_fmt(head['iqm']['iqm'])} [{_fmt(head['iqm']['ci_low'])}, "
                            f"{_fmt(head['iqm']['ci_high'])}]" if head and head.get("iqm") else "") + ".", ""]
    profiles = [f"`{m}` > {_fmt(t)}: {v:.0%} [{lo:.0%}, {hi:.0%}]" for m in s.metrics if (f.pooled.get(m) or {}).get("profile")
                for t, v, lo, hi in zip(*(f.pooled[m]["profile"][k] for k in ("tau", "profile", "ci_low", "ci_high")))]
    if profiles:
        md += ["**Share of seeds above the rule's thresholds** (performance profile, bootstrap over seeds): "
               + "; ".join(profiles) + ".", ""]
    checks = []
    for c in f.comparisons:
        lv = "not measured" if c["left_value"] is None else _fmt(c["left_value"])
        rv = c["right"] if not isinstance(c["right"], str) else (
            f"{c['right']} = " + ("not measured" if c["right_value"] is None else _fmt(c["right_value"])))
        checks.append(f"`{c['comparison']}`: {c['left']} = {lv}" + (f" vs {rv}" if isinstance(c["right"], str) else "")
                      + " — " + {True: "holds", False: "fails", None: "not measured"}[c["holds"]])
    md += ["**Rule, evaluated.** " + "; ".join(checks) + ".", "", f"**Verdict:** {_verdict(f)}.", ""]
    missing = {m: why for m, why in f.missing.items()}
    if missing:
        md += ["**Not measured.** " + "; ".join(f"`{m}`: {why}" for m, why in missing.items()) + ".", ""]
    extra = [m for m in f.pooled if m not in s.metrics]
    if extra:
        md += ["Also measured (beside the rule, pooled the same way):", "", "| row | " + " | ".join(f"seed {k}" for k in seeds)
               + " | pooled |", "|---" * (len(seeds) + 2) + "|"]
        md += [f"| `{m}` | " + " | ".join(_fmt(f.pooled[m]["per_seed"].get(k)) for k in seeds) + f" | {_ci(f.pooled[m])} |"
               for m in extra]
        md += [""]
    md += papers_md(f)
    flags = ", ".join(f"{k}: {'yes' if v else 'no'}" for k, v in f.flags.items())
    md += [f"**Measured on seed {f.seed}.** {f.measured}." + (f" ({flags})" if flags else ""), ""]
    return md


def write_report(findings: list, out_dir, per_seed: list[list] | None = None, meta: dict | None = None) -> dict:
    """out_dir/report.md, report.html, findings.json and figures/NAME.png|svg. Returns the paths."""
    out = Path(out_dir)
    figs = {name: fig for f in findings for name, fig in f.figures.items()}
    write_figures(figs, out / "figures", ("png", "svg"))
    from analysis.research.registration import registration_json
    from analysis.research.reproduce import checkout_hashes, registry

    prereg = preregistration_line()
    meta = {"created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "versions": versions(),
            "preregistration": prereg, "registration": registration_json(registry(), checkout_hashes()),
            **(meta or {})}
    payload = {"findings": [f.to_json() for f in findings], "meta": meta}
    if per_seed:
        payload["per_seed"] = [[f.to_json() for f in run] for run in per_seed]
    (out / "findings.json").write_text(json.dumps(payload, indent=2, default=float))

    seeds = meta.get("seeds") or {}
    md = ["# The papers' findings, measured with seqlens", "", prereg, "", *registration_md(),
          f"Made by `python cli.py reproduce` on {meta['created']} (seqlens {meta['versions'].get('seqlens')}, "
          f"{meta.get('agents', 'shipped agents')}). Each finding's headline is the mean of its metric over training "
          f"seeds with a {_level()} confidence interval ({_interval_sentence()}); its "
          "verdict is its pre-registered rule evaluated on those pooled numbers. Every figure is exported by the "
          "dashboard's own code (PNG and SVG in `figures/`) from the first seed's run. A finding that does not "
          "reproduce is reported as measured; no target was moved.", ""]
    if seeds:
        md += ["Seeds: " + "; ".join(f"{k}: {v}" for k, v in seeds.items()) + ".", ""]
    md += ["| finding | target | verdict |", "|---|---|---|"]
    md += [f"| {f.title} | {f.spec.target if f.spec else f.claim.split('Target: ')[-1]} | {_verdict(f)} |" for f in findings]
    for f in findings:
        md += _finding_md(f)
        md += [f"![{name}](figures/{name}.svg)" for name in f.figures]
    (out / "report.md").write_text("\n".join(md) + "\n")
    (out / "report.html").write_text(_html(md))
    return {"report_md": str(out / "report.md"), "report_html": str(out / "report.html"),
            "findings_json": str(out / "findings.json"), "figures": sorted(str(p) for p in (out / "figures").iterdir())}


def _inline(text: str) -> str:
    import re

    t = html.escape(text)
    t = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", t)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", t)


def _html(md: list[str]) -> str:
    """The report's few Markdown forms (headings, paragraphs, one table, images) as a standalone page."""
    body, table = [], []
    for line in md + [""]:
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            if not set("".join(cells)) <= set("-"):
                table.append(cells)
            continue
        if table:
            head, *rows = table
            body.append("<table><tr>" + "".join(f"<th>{_inline(c)}</th>" for c in head) + "</tr>" +
                        "".join("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in r) + "</tr>" for r in rows) + "</table>")
            table = []
        if line.startswith("## "):
            body.append(f"<h2>{_inline(line[3:])}</h2>")
        elif line.startswith("# "):
            body.append(f"<h1>{_inline(line[2:])}</h1>")
        elif line.startswith("!["):
            alt, src = line[2:].split("](")
            body.append(f'<img src="{html.escape(src.rstrip(")"))}" alt="{html.escape(alt)}">')
        elif line.strip():
            body.append(f"<p>{_inline(line)}</p>")
    style = ("body{font-family:DejaVu Sans,Arial,sans-serif;max-width:960px;margin:2em auto;color:#222;line-height:1.5}"
             "img{max-width:100%;margin:0.5em 0}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px}"
             "code{background:#f4f4f4;padding:0 3px}")
    return f"<!doctype html><html><head><meta charset='utf-8'><title>seqlens reproduction report</title><style>{style}</style></head><body>" \
           + "\n".join(body) + "</body></html>\n"
