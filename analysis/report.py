"""The reproduction report: Markdown and HTML beside figures as PNG and SVG (the dashboard's export code)."""
from __future__ import annotations

import html
import json
from datetime import datetime, timezone
from pathlib import Path

from .export import versions, write_figures


def _verdict(reproduced) -> str:
    return {True: "reproduced", False: "**not reproduced**", None: "reported"}[reproduced]


def write_report(findings: list, out_dir, per_seed: list[list] | None = None, meta: dict | None = None) -> dict:
    """out_dir/report.md, report.html, findings.json and figures/NAME.png|svg. Returns the paths."""
    out = Path(out_dir)
    figs = {name: fig for f in findings for name, fig in f.figures.items()}
    write_figures(figs, out / "figures", ("png", "svg"))
    meta = {"created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "versions": versions(), **(meta or {})}
    payload = {"findings": [f.to_json() for f in findings], "meta": meta}
    if per_seed:
        payload["per_seed"] = [[f.to_json() for f in run] for run in per_seed]
    (out / "findings.json").write_text(json.dumps(payload, indent=2, default=float))

    md = ["# The papers' findings, measured with seqlens", "",
          f"Made by `python cli.py reproduce` on {meta['created']} (seqlens {meta['versions'].get('seqlens')}, "
          f"{meta.get('agents', 'shipped agents')}). Every number is a mean with its 95% bootstrap confidence interval; "
          "every figure is exported by the dashboard's own code (PNG and SVG in `figures/`). A finding that does not "
          "reproduce is reported as measured; no target was moved.", "",
          "| finding | target | verdict |", "|---|---|---|"]
    md += [f"| {f.title} | {f.claim.split('Target: ')[-1]} | {_verdict(f.reproduced)} |" for f in findings]
    for f in findings:
        md += ["", f"## {f.title}", "", f"**Claim.** {f.claim}", "", f"**Measured.** {f.measured}.", "",
               f"**Verdict:** {_verdict(f.reproduced)}.", ""]
        md += [f"![{name}](figures/{name}.svg)" for name in f.figures]
        if per_seed:
            md += ["", "Per seed: " + "; ".join(
                f"seed {i}: {_verdict(next(x for x in run if x.id == f.id).reproduced)}" for i, run in enumerate(per_seed))]
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
    for line in md:
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
