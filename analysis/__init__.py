"""Pure computation behind every page and export (never imports streamlit), in sub-packages named for their job.

Lower packages never import higher ones (tests/test_layers.py):
core -> interp -> behaviour -> media -> publish -> research.
- core/       infrastructure every analysis uses: the one cache, content identity, model inputs, intervals
- interp/     interpretability methods: attention, attribution, patching, DLA, ablation, embeddings
- behaviour/  what an agent does and predicts: evaluation, return sweeps, context, predicted vs real
- media/      episodes as pictures: frames, overlays and video, the episode player, live play
- publish/    figures and exports: the catalog of every figure, its entries, plotly figures, export, compare mode
- research/   the papers' findings measured on our agents: findings.toml, reproduce, seed runs, the report
"""
