"""Catalog entries: every exportable figure by name, one module per topic (analysis/publish/catalog.py imports them).

An entry runs its topic's analysis (analysis/<topic>.py, which returns result objects and knows nothing of
the catalog), draws the figure (analysis/publish/figures/) and returns a `catalog.Figured` with the data and the
parameters that remake it.
"""
