"""Registration that binds (issue 24, item 7): findings.toml's [registration] table pins, per finding, the hash of
the code that measures it and of the recipes of the agents it uses; `python cli.py register` writes the table; the
report says what changed since (never silently) and prints the disclosures of earlier changes.

What a hash covers (decided here, documented in docs/ARCHITECTURE.md):
- code: sha256 over (path, bytes) of the finding module's files (reproduce.FindingModule.files: the module, the
  pooling code every finding shares and the analysis code it measures with), in the order listed. Any byte counts,
  a comment too: the report names the files, so a reader can diff them against the registered commit.
- recipes: sha256 of the canonical JSON (sorted keys) of {agent: models.recipes.SAMPLE_AGENTS[agent]} for the
  agents findings.toml gives the finding (an agent without a recipe, e.g. a shipped import, as null). Training code
  is pinned by the checkpoints instead: seed files record each checkpoint's sha256 (`checkpoint_hash`).
- findings.toml itself (metrics, rules, splits, targets) is pinned by its commit (findings.last_commit).

The table, written after the findings:

    [registration]
    version = 2
    previous_commit = "eaca646"        # the commit that registered the version this one replaces
    code_commit = "<HEAD when registered>"
    created = "YYYY-MM-DD"
    disclosures = ["...", ...]         # what changed after the previous registration, in words

    [registration.code]                # finding id -> sha256
    [registration.recipes]             # finding id -> sha256
"""
from __future__ import annotations

import hashlib
import json
import re
import subprocess
from datetime import datetime, timezone
from pathlib import Path

from analysis.research.findings import ROOT, FindingsError, Registry, last_commit, load_findings

MARKER = "# ---- registration: written by `python cli.py register` (do not edit the hashes by hand)"

# The changes after registration 1 (findings.toml at eaca646, 2026-11-30 09:43 UTC), from git log of findings.toml,
# models/recipes.py and the report; `register` writes these when the table has none yet (the lead edits them there).
DISCLOSURES_V2 = (
    "Registration 1 (findings.toml, commit eaca646, 2026-11-30 09:43 UTC) came after single-seed results of all four "
    "findings existed (docs/report of commit 7319184, 2026-11-29).",
    "Key-to-Door metric switch: the single-seed report of 2026-11-29 measured Key-to-Door by the key-pickup step's "
    "share of integrated-gradients credit (2.25x uniform, reported as not reproduced); registration 1 then made "
    "activation patching of the post-pickup span (patching_span_effect) the metric and moved the credit shares to "
    "secondary rows, after that result was known.",
    "Recipes changed after registration 1: commit aa36402 (2026-11-30 11:47 UTC, two hours later) made every "
    "findings recipe cheaper (gelu_pytorch_tanh, ~2,000 steps; cartpole-dt 4,000), unbanded masked-cartpole-dt-k20, "
    "gave masked-cartpole-dt-k1 1,280-token batches, added masked-cartpole-mlp and pendulum-tt-500, and retrained "
    "the shipped findings agents; the 5-seed results (seeds 1-4, docs/report/seeds) were made with those recipes.",
    "Registration 1 pinned neither recipes nor code; the report printed only findings.toml's commit. Its intervals "
    "were a stratified bootstrap over 5 seeds (84-87% coverage when seed variance dominates: analysis/core/stats.py "
    "coverage), its evaluation reset seeds were seed + i (training seeds shared start states), and the return-"
    "conditioning rule read point estimates.",
)


# ---- hashes ------------------------------------------------------------------------------------------------------
def code_hash(files, root=ROOT) -> str:
    """sha256 over each file's repository-relative path and bytes (a missing file hashes as missing)."""
    h = hashlib.sha256()
    for rel in files:
        p = Path(root) / rel
        h.update(rel.encode() + b"\0")
        h.update(p.read_bytes() if p.is_file() else b"<missing>")
        h.update(b"\0")
    return h.hexdigest()


def recipe_hash(agents, recipes: dict | None = None) -> str:
    """sha256 of the canonical JSON of {agent: its recipe (None without one)}."""
    if recipes is None:
        from models.recipes import SAMPLE_AGENTS as recipes
    doc = {a: recipes.get(a) for a in agents}
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=repr).encode()).hexdigest()


def checkpoint_hash(directory) -> str:
    """sha256 of a checkpoint directory's config.json and model.safetensors (what load_agent reads)."""
    h = hashlib.sha256()
    for name in ("config.json", "model.safetensors"):
        h.update(name.encode() + b"\0" + (Path(directory) / name).read_bytes() + b"\0")
    return h.hexdigest()


def current_hashes(reg: Registry, files: dict, root=ROOT) -> dict:
    """{"code": {finding: sha256}, "recipes": {finding: sha256}, "files": {finding: [paths]}} of this checkout.
    files: {finding id: the repository-relative files its code hash covers} (reproduce.checkout_hashes passes each
    finding module's; this module never imports reproduce, which imports it)."""
    out = {"code": {}, "recipes": {}, "files": {}}
    for f in reg.findings:
        out["files"][f.id] = list(files[f.id])
        out["code"][f.id] = code_hash(files[f.id], root)
        out["recipes"][f.id] = recipe_hash(f.agents)
    return out


def git_head(root=ROOT) -> str | None:
    """HEAD's full hash, with '+dirty' when tracked files differ from it; None outside a checkout."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=20)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root, capture_output=True,
                               text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    if head.returncode != 0:
        return None
    return head.stdout.strip() + ("+dirty" if dirty.returncode == 0 and dirty.stdout.strip() else "")


# ---- what changed since ------------------------------------------------------------------------------------------
def changes(reg: Registry, current: dict) -> list[str]:
    """What differs from the registration: ["the code of X (files ...)", "the recipes of Y (agents ...)"]; [] when
    nothing did. A file without a registration: ["findings.toml has no [registration] ..."]."""
    if reg.registration is None:
        return ["findings.toml has no [registration] table (registration 1 pinned no code or recipe hashes)"]
    pinned = reg.registration
    out = [f"the finding {f.id} (added after registration: no hashes pinned)" for f in reg.findings
           if f.id not in pinned["code"] or f.id not in pinned["recipes"]]
    ids = {f.id for f in reg.findings}
    out += [f"the finding {fid} (registered, no longer in findings.toml)" for fid in pinned["code"] if fid not in ids]
    for f in reg.findings:
        if f.id not in pinned["code"] or f.id not in pinned["recipes"]:
            continue
        if reg.registration["code"].get(f.id) != current["code"][f.id]:
            out.append(f"the code of {f.id} ({', '.join(current['files'][f.id])})")
        if reg.registration["recipes"].get(f.id) != current["recipes"][f.id]:
            out.append(f"the recipes of {f.id} ({', '.join(f.agents)})")
    return out


def registration_json(reg: Registry, current: dict) -> dict:
    """findings.json's meta["registration"]: the pinned table, this checkout's hashes (current_hashes) and what
    changed."""
    pinned = reg.registration or {}
    commit = last_commit(reg.path)
    return {"version": pinned.get("version", 1), "findings_toml_commit": commit[0] if commit else None,
            "previous_commit": pinned.get("previous_commit"), "code_commit": pinned.get("code_commit"),
            "pinned": {"code": pinned.get("code"), "recipes": pinned.get("recipes")},
            "current": {"code": current["code"], "recipes": current["recipes"]}, "files": current["files"],
            "changed_since_registration": changes(reg, current), "disclosures": list(pinned.get("disclosures", [])),
            "interval": reg.interval, "reset_seeds": reg.reset_seeds}


def finding_registration(reg: Registry, finding_id: str, current: dict) -> dict:
    """One finding's `registration` in findings.json: its pinned and current hashes, and whether they agree."""
    pinned = reg.registration or {}
    out = {}
    for k in ("code", "recipes"):
        p = (pinned.get(k) or {}).get(finding_id)
        out[k] = {"pinned": p, "current": current[k][finding_id], "changed": None if p is None else p != current[k][finding_id]}
    return out


def report_lines(reg: Registry, current: dict) -> list[str]:
    """The report's registration paragraph: version, the pinned hashes, 'changed since registration: ...' (or none),
    and the disclosures."""
    if reg.registration is None:
        return [f"**Registration.** Version 1: findings.toml alone (no [registration] table); changed since "
                f"registration: not checkable (code and recipes were not pinned).", ""]
    r = reg.registration
    md = [f"**Registration.** Version {r['version']}" + (f", replacing the registration of commit {r['previous_commit']}"
          if r.get("previous_commit") else "") + (f"; registered at code commit {r['code_commit'][:12]}" if r.get("code_commit") else "")
          + (f" on {r['created']}" if r.get("created") else "")
          + f". Across-seed interval: {reg.interval}; evaluation reset seeds: {reg.reset_seeds}.", "",
          "| finding | code sha256 (pinned) | recipes sha256 (pinned) |", "|---|---|---|"]
    md += [f"| {f.id} | `{r['code'][f.id][:16]}` | `{r['recipes'][f.id][:16]}` |" for f in reg.findings]
    changed = changes(reg, current)
    md += ["", "**Changed since registration:** " + ("; ".join(changed) if changed else "nothing") + ".", ""]
    if r.get("disclosures"):
        md += ["**Disclosures** (changes after the previous registration):", ""] + [f"- {d}" for d in r["disclosures"]] + [""]
    return md


# ---- writing the table -------------------------------------------------------------------------------------------
def _toml_str(s: str) -> str:
    return json.dumps(s, ensure_ascii=False)   # a JSON string is a valid TOML basic string


def registration_block(reg: Registry, version: int, previous_commit: str | None, disclosures, current: dict,
                       code_commit: str | None, created: str) -> str:
    lines = [MARKER, "[registration]", f"version = {int(version)}"]
    if previous_commit:
        lines.append(f"previous_commit = {_toml_str(previous_commit)}")
    if code_commit:
        lines.append(f"code_commit = {_toml_str(code_commit)}")
    lines += [f"created = {_toml_str(created)}", "disclosures = ["] + [f"    {_toml_str(d)}," for d in disclosures] + ["]"]
    for k in ("code", "recipes"):
        lines += ["", f"[registration.{k}]"] + [f"{fid} = {_toml_str(current[k][fid])}" for fid in current[k]]
    return "\n".join(lines) + "\n"


def register(files_of, path=ROOT / "findings.toml", version: int | None = None, disclosures=None, root=ROOT,
             previous_commit: str | None = None) -> dict:
    """Write findings.toml's [registration] from this checkout: every finding's code and recipe hashes, the next
    version (or `version`), the previous registration's commit (`previous_commit`; default: the commit that last
    changed the file's content, so register before committing new findings or name it), and the disclosures (given; else those already in
    the table; else DISCLOSURES_V2 for version 2). files_of(finding id) -> the files its code hash covers. Replaces an earlier table (which must be the file's end, after
    MARKER or starting at [registration]). Returns {"path", "version", "code", "recipes"}."""
    path = Path(path)
    old = load_findings(path).registration
    text = path.read_text(encoding="utf-8")
    at = text.find(MARKER)
    if at < 0:
        m = re.search(r"^\[registration\]", text, re.M)
        at = m.start() if m else -1
    head = text if at < 0 else text[:at]
    if at >= 0 and re.search(r"^\[\[finding\]\]", text[at:], re.M):
        raise FindingsError(f"{path.name}: a [[finding]] follows the [registration] table; the table must be the "
                            "file's end (move the finding above it).")
    reg = load_findings(path, head)
    current = current_hashes(reg, {f.id: files_of(f.id) for f in reg.findings}, root)
    prev = last_commit(path)
    version = int(version if version is not None else (old["version"] + 1 if old else 2))
    if disclosures is None:
        disclosures = old["disclosures"] if old and old.get("disclosures") else (list(DISCLOSURES_V2) if version == 2 else [])
    head_commit = git_head(root)
    block = registration_block(reg, version, previous_commit or (prev[0] if prev else None), disclosures, current, head_commit,
                               datetime.now(timezone.utc).strftime("%Y-%m-%d"))
    path.write_text(head.rstrip("\n") + "\n\n" + block, encoding="utf-8")
    load_findings(path)   # what was written reads back
    return {"path": str(path), "version": version, "code": current["code"], "recipes": current["recipes"]}


# ---- seed files from another commit ------------------------------------------------------------------------------
def seed_file_note(doc: dict, current: dict, head: str | None = None) -> str | None:
    """One sentence when a seed file was made at another code commit than this checkout (naming the findings whose
    code or recipes differ from the hashes it recorded), or records none; None when it matches."""
    name = f"seed{doc.get('seed')}.json"
    made = doc.get("code_commit")
    if not made:
        return (f"{name} records no code commit (seed-file format 1): its code and checkpoints cannot be checked "
                "against this checkout")
    head = head or git_head()
    if made == head and not made.endswith("+dirty"):
        return None
    hashes = doc.get("hashes") or {}
    differ = [f"the code of {fid}" for fid, h in (hashes.get("code") or {}).items() if current["code"].get(fid) not in (None, h)]
    differ += [f"the recipes of {fid}" for fid, h in (hashes.get("recipes") or {}).items()
               if current["recipes"].get(fid) not in (None, h)]
    return (f"{name} was made at code commit {made[:12]}, not this checkout's {(head or 'unknown')[:12]}; "
            + (f"since then {', '.join(differ)} changed" if differ else "the findings' code and recipes hash the same"))
