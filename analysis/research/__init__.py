"""The papers' findings measured on seqlens' agents: the pre-registered findings and their rules (findings.py,
findings.toml), `cli.py reproduce` (reproduce.py, seed_runs.py), the papers' own numbers (papers.py) and the
report (report.py). The top of analysis/: imports any package below it, and none imports it."""
