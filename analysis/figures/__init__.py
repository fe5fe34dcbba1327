"""Plotly figures with one publication template (style.py). Figures draw results; they never compute
analyses. One module per analysis; everything public is re-exported here."""
from .style import DIVERGING, PALETTE, SEQUENTIAL, TEMPLATE, TOKEN_COLOURS  # noqa: F401
from .dataset import episode_signals, episode_timeline, returns_histogram  # noqa: F401
from .attribution import attribution_features, attribution_timesteps, key_door_credit_bars  # noqa: F401
