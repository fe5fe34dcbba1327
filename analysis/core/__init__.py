"""Infrastructure every analysis uses: the one cache (cache.py), content keys (identity.py), an agent's windows of
a Dataset (inputs.py) and every interval estimate (stats.py). Imports nothing else from analysis/."""
