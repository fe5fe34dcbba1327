"""Compare mode: one catalog figure for two agents on the same dataset, episode and step, as panels of one figure,
with their difference (B − A) where a difference means something.

`compare(name, agent_a, agent_b, dataset, label_a, label_b, axes="auto", **params)` makes the figure for each agent
through catalog.make (or a caller's cached `make`) and returns ONE Figured: the two figures as panels of one figure,
then a panel with B − A where the figure's `Spec` asks for it and the two results align; figures whose spec is
"overlay" draw B's traces on A's axes instead (the return sweep, predicted vs real: one real trace, both predictions).
`axes` says whether B's axes and colour scales are A's: "shared", "independent", or "auto" (default): shared where
both agents' extents fill most of the shared range, else each its own (analysis/publish/compare_panels.py has the
rule, the layout and its sizes); an overlay with independent axes is drawn side by side. The data is both frames
with an `agent` column (the labels) and, with a difference, rows with agent = "B − A". B is made with A's resolved
parameters (the same targets, step, start), except those that name the agent (`Spec.own_params`); each panel's
subtitle is its own figure's.

`randomized_agent(agent, seed)` is the agent with every weight re-initialised (analysis.interp.attribution.randomized_copy,
the model the attribution pages' Adebayo baseline uses), config identical, stamped with its own content key; one per
(agent content, seed), a shared object of the one cache (the 8 most recent kept).

How a figure is compared is declared once: `catalog.register(..., compare=Spec(...))` (or "difference", "overlay",
"side"), else the table SPECS below, else side by side. Figures without an agent cannot be compared.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis.publish import catalog
from analysis.publish.catalog import Figured
from analysis.publish.compare_panels import (AXES, B_COLOUR, DIFF, combine, overlay, same_axes,  # noqa: F401
                                             side_by_side)

RANDOMIZED = "randomized"          # what `--compare` and `?compare=` say for the randomized copy


class CompareError(ValueError):
    """A second agent that cannot be compared here: one sentence that says what fits."""


@dataclass(frozen=True)
class Spec:
    """How a figure is compared. mode: "difference" (A | B | B − A), "side" (A | B) or "overlay" (B's traces on A's
    axes). keys: float columns of the data that index rows (a shift, a target) rather than values to subtract.
    own_params: parameters that name the agent (each agent gets its own label). join: a figure that draws pictures
    (go.Image, which compare_panels cannot join) pairs them itself: join(fa, fb, agent_a, agent_b, dataset, label_a,
    label_b) -> (figure, whether it drew B − A)."""

    mode: str = "side"
    keys: tuple = ()
    own_params: tuple = ()
    join: object = None


SPECS = {
    "attention_map": Spec("difference"),
    "attention_token_types": Spec("difference"),
    "attention_steps_back": Spec("difference"),
    "attention_rollout": Spec("difference"),
    "attention_episode": Spec("difference"),
    "tt_attention": Spec("difference"),
    "tt_attention_dims": Spec("difference"),
    "attribution_timesteps": Spec("difference", keys=("reward",)),
    "attribution_features": Spec("difference"),
    "predicted_vs_real": Spec("overlay"),
    "rtg_sweep_returns": Spec("overlay"),
    "rtg_sweep_actions": Spec("side"),
    "rtg_sweep_attention": Spec("difference", keys=("target_return",)),
    "rtg_shift_replay": Spec("side"),
    "prediction_error_compare": Spec("side", own_params=("label",)),
    # Circuits (issue 14): maps and parts on the same grid for two agents of one architecture
    "patching_positions": Spec("difference"),
    "patching_heads": Spec("difference"),
    "direct_logit_attribution": Spec("difference"),
}


def spec(name: str) -> Spec:
    entry = catalog.figures().get(name)
    own = getattr(entry, "compare", None)
    if isinstance(own, str):
        own = Spec(own)
    return own or SPECS.get(name, Spec())


def supports(name: str) -> bool:
    """Can this figure be compared (does it draw an agent)?"""
    entry = catalog.figures().get(name)
    return bool(entry and entry.needs_agent)


# ---- the second agent -----------------------------------------------------------------------------------
RANDOMIZED_KEPT = 8   # randomized copies kept (shared objects of the one cache)


def randomized_agent(agent, seed: int = 0):
    """`agent` with every weight re-initialised (seeded; analysis.interp.attribution.randomized_copy), its config, notes and
    recorded input choices identical, stamped with its own content key. One per (agent content, seed), a shared
    object of the one cache (analysis.core.cache.shared)."""
    from analysis.core.cache import shared
    from analysis.core.identity import agent_key

    return shared("randomized_agent", (agent_key(agent), int(seed)), lambda: _randomize(agent, int(seed)),
                  RANDOMIZED_KEPT)


def _randomize(agent, seed: int):
    from analysis.interp.attribution import randomized_copy
    from analysis.core.identity import agent_key, stamp_agent

    copy_ = randomized_copy(agent, seed)
    if copy_.config is not agent.config:
        copy_.__dict__["config"] = agent.config
    for attr in ("notes", "input_choices"):   # what Home's choices and the loader recorded (models.env_choice)
        if attr in getattr(agent, "__dict__", {}):
            copy_.__dict__[attr] = copy.copy(agent.__dict__[attr])
    copy_.__dict__["randomized_from"] = {"agent": agent_key(agent), "seed": seed}
    return stamp_agent(copy_)


def check_pair(agent_a, agent_b, dataset, label_a: str = "A", label_b: str = "B") -> None:
    """The second agent must read the dataset the first one reads: else one sentence saying what fits."""
    from models.errors import AgentError
    from models.checks import check_dataset

    try:
        check_dataset(agent_b, dataset)
    except AgentError as e:
        raise CompareError(f"{label_b} cannot be compared with {label_a} on {dataset.source}: {e} {fits_sentence(dataset)}") \
            from None


def fits_sentence(dataset) -> str:
    """What a second agent must read to be compared on this dataset."""
    acts = (f"{dataset.n_actions} discrete actions" if dataset.discrete else f"{dataset.act_dim}-d continuous actions")
    return (f"Compare with an agent that reads {dataset.obs_dim} observation features and {acts} "
            f"(or with the randomized copy, `{RANDOMIZED}`).")


# ---- the comparison ---------------------------------------------------------------------------------------
def compare(name: str, agent_a, agent_b, dataset, label_a: str = "A", label_b: str = "B", make=None, axes: str = "auto",
            **params) -> Figured:
    """Figure `name` for agent A and agent B on `dataset` (same parameters), as one Figured (module docstring).
    make(name, agent, dataset, **params) -> Figured makes each one (default catalog.make; pages pass their cache).
    axes: "auto", "shared" or "independent" (module docstring); not "auto" it is one of the Figured's params (the
    bundle's remake line). A figure B cannot make (another kind, fewer heads) raises CompareError with the reason."""
    import inspect

    from models.errors import AgentError

    entries = catalog.figures()
    if name not in entries:
        raise KeyError(f"unknown figure '{name}'; known figures: {', '.join(entries)}.")
    if not entries[name].needs_agent:
        raise CompareError(f"figure '{name}' draws the dataset alone, so there is no second agent to compare; compare "
                           "mode applies to the figures of an agent (e.g. attention_map, rtg_sweep_returns).")
    if axes not in AXES:
        raise CompareError(f"axes must be one of {', '.join(AXES)} (how B's axes relate to A's), not '{axes}'.")
    make = make or catalog.make
    check_pair(agent_a, agent_b, dataset, label_a, label_b)
    s = spec(name)
    fa = make(name, agent_a, dataset, **params)
    if s.join is None and any(t.type == "image" and t.z is not None for t in fa.figure.data):   # values, not pixels
        raise CompareError(f"figure '{name}' draws pictures (observations under their credit), which compare mode does "
                           f"not put beside another agent's; open each agent on its own.")
    accepted = set(inspect.signature(entries[name].make).parameters) - {"agent", "dataset"}
    pb = dict(params)
    for k, v in fa.params.items():   # A's resolved defaults (targets, step, start): both on the same inputs
        if k in accepted and pb.get(k) is None:
            pb[k] = v
    for k in s.own_params:
        if k in accepted:
            pb[k] = label_b
    try:
        fb = make(name, agent_b, dataset, **pb)
    except (ValueError, IndexError, KeyError, AgentError) as e:
        raise CompareError(f"{label_b} cannot draw {name} beside {label_a}: {str(e).rstrip('.')}.") from None
    diff = difference_frame(fa.data, fb.data, s.keys) if s.mode == "difference" else None
    if s.join is not None:
        fig, drawn = s.join(fa, fb, agent_a, agent_b, dataset, label_a, label_b)
        diff = difference_frame(fa.data, fb.data, s.keys) if drawn else None
    elif s.mode == "overlay" and axes != "independent" and same_axes(fa.figure, fb.figure):
        fig = overlay(fa.figure, fb.figure, label_a, label_b)
    else:
        fig, n_diff = combine(fa.figure, fb.figure, label_a, label_b, with_difference=diff is not None, axes=axes)
        if not n_diff:   # no trace pair to subtract: no difference at all
            diff = None
    frames = [fa.data.assign(agent=label_a), fb.data.assign(agent=label_b)]
    if diff is not None:
        frames.append(diff.assign(agent=DIFF))
    data = pd.concat(frames, ignore_index=True)
    data = data[["agent"] + [c for c in data.columns if c != "agent"]]
    return Figured(name, fig, data, {**fa.params, **({"axes": axes} if axes != "auto" else {}), "compare": label_b},
                   uses_dataset=fa.uses_dataset)


def difference_frame(a: pd.DataFrame, b: pd.DataFrame, keys=()) -> pd.DataFrame | None:
    """B − A on the numeric value columns (floats, less `keys`) where the two frames index the same rows (the other
    columns equal row by row, or as unique keys); None where they do not align."""
    if list(a.columns) != list(b.columns) or len(a) != len(b) or len(a) == 0:
        return None
    values = [c for c in a.columns if pd.api.types.is_float_dtype(a[c]) and pd.api.types.is_float_dtype(b[c])
              and c not in keys]
    index = [c for c in a.columns if c not in values]
    if not values:
        return None
    a, b = a.reset_index(drop=True), b.reset_index(drop=True)
    if not index or a[index].equals(b[index]):
        out = a.copy()
        out[values] = b[values].to_numpy(np.float64) - a[values].to_numpy(np.float64)
        return out
    if a[index].duplicated().any() or b[index].duplicated().any():
        return None
    merged = a.merge(b, on=index, how="outer", suffixes=("", "__b"), indicator=True)
    if (merged["_merge"] != "both").any():
        return None
    out = merged[index].copy()
    for c in values:
        out[c] = merged[f"{c}__b"].to_numpy(np.float64) - merged[c].to_numpy(np.float64)
    return out[list(a.columns)]
