"""Catalog entries for ablation: zero- or mean-ablated heads and MLPs, on data and in the environment (issue 14)."""
from __future__ import annotations
