"""Interpretability methods on a model's internals over logged data: attention, attribution (with its per-model
adapters and Key-to-Door markers and credit), activation patching, direct logit attribution, ablation (components.py:
the parts, means and interventions ablation and the Trajectory Transformer's causal views share), embeddings.
Imports analysis.core only."""
