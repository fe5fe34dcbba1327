"""Figures and exports: the catalog of every exportable figure (catalog.py; entries/ registers them, one module per
topic), plotly figures with one template (figures/), PNG / SVG / PDF / HTML / CSV and bundles (export.py), and
compare mode (compare_mode.py: one figure for two agents). Imports every analysis package below it."""
