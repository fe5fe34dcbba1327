"""Plotly figures with one publication template (style.py). Figures draw results; they never compute
analyses. One module per analysis; everything public is re-exported here. Every name a figure draws (file, column,
action label, agent) goes through text.plain, so none is read as markup or a template placeholder."""
from .style import DIVERGING, PALETTE, SEQUENTIAL, TEMPLATE, TOKEN_COLOURS  # noqa: F401
from .dataset import episode_signals, episode_timeline, returns_histogram  # noqa: F401
from .predictions import error_vs_horizon, prediction_traces  # noqa: F401
from .attention import (attention_by_steps_back, attention_by_type, attention_map, episode_attention_map,  # noqa: F401
                        rollout_bars, tt_attention_map, tt_dimension_map)
from .sweeps import shift_replay, sweep_actions, sweep_attention, sweep_returns  # noqa: F401
from .embeddings import embedding_scatter  # noqa: F401
from .attribution import attribution_features, attribution_timesteps, key_door_credit_bars  # noqa: F401
from .context import context_accuracy_figure, context_returns_figure  # noqa: F401
