"""Catalog entries for causal views: activation patching, direct logit attribution, logit lens (issue 14)."""
from __future__ import annotations
