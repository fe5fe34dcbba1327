"""Agents (Decision Transformer, Trajectory Transformer, MLP / GRU baselines), checkpoints and training.

Empty until the agents issue lands; the directory exists so the layout of DESIGN.md is in place.
"""
