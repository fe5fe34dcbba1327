"""What figures call things (issue 27, items 2 and 5): the data a figure was computed from, the dataset's own action
names, a series that carries no information, and which colour scale a heatmap is on.

Names come raw from the Dataset and are returned raw: figure code passes them through text.plain where it draws them
(`data_name` is the exception: it is only ever put into figure text, so it returns the escaped name).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from .text import plain

SCALES = ("data", "fixed")   # a heatmap's colour scale: fitted to the data shown, or the quantity's whole range


def data_name(dataset) -> str:
    """The name of the data a figure was computed from, as figure text: the upload's file name, the local path, the
    shipped file name (Dataset.source, which every reader sets to what the user chose)."""
    return plain(getattr(dataset, "source", None) or "the dataset")


def action_labels(dataset, n: int | None = None, env_id: str | None = None) -> list[str]:
    """One name per discrete action: the dataset's metadata["action_labels"], else its environment's
    (envs.ACTION_LABELS, e.g. CartPole's push_left / push_right; `env_id` where there is no dataset), else
    "action i". `n`: how many the agent has."""
    import envs

    n = int(n if n is not None else (getattr(dataset, "n_actions", None) or 0))
    meta = getattr(dataset, "metadata", None) or {}
    env = getattr(dataset, "env_id", None) or env_id or ""
    for labels in (meta.get("action_labels"), envs.ACTION_LABELS.get(env)):
        labels = [str(x) for x in (labels or [])]
        if labels and (n == 0 or len(labels) == n):
            return labels
    return [f"action {i}" for i in range(n)]


def action_dim_names(dataset, d: int, env_id: str | None = None) -> list[str]:
    """One name per continuous action dimension: the dataset's act_names (Reacher's shoulder_torque, elbow_torque),
    else its environment's (envs.ACT_NAMES; `env_id` where there is no dataset), else "action dim i"."""
    import envs

    names = list(getattr(dataset, "act_names", None) or envs.ACT_NAMES.get(getattr(dataset, "env_id", None) or env_id
                                                                          or "") or [])
    return [str(x) for x in names] if len(names) == d else [f"action dim {i}" for i in range(d)]


def readable(name: str) -> str:
    """push_left -> push left: ticks and legends read as words (the CSV keeps the name as written)."""
    return str(name).replace("_", " ")


def constant(values) -> float | None:
    """The one value of a series that never changes (CartPole's reward of 1), else None (an empty series: None)."""
    v = np.asarray(values, dtype=float).ravel()
    v = v[np.isfinite(v)]
    if v.size == 0 or v.max() != v.min():
        return None
    return float(v[0])


def constant_note(what: str, value: float, where: str = "at every step") -> str:
    """One line in place of a panel that would show one value everywhere (figure text, no names in it)."""
    return f"{what} is {value:.4g} {where} (constant: not drawn)"


def scale_title(what: str, scale: str, low: float = 0.0, high: float = 1.0) -> str:
    """A colour bar's title that says which scale it is on: the data's own range, or the fixed one."""
    if scale == "fixed":
        return f"{what}<br>(fixed {low:g}–{high:g})"
    return f"{what}<br>(0 to max shown)"


CAP_PERCENTILE = 99   # the data scale's top: this percentile of the weights that carry information


@dataclass(frozen=True)
class Cap:
    """A data-fitted colour scale's top: `zmax`, and whether cells above it exist (then drawn at the top colour)."""

    zmax: float
    capped: bool
    q: int = CAP_PERCENTILE

    def title(self, what: str) -> str:
        if not self.capped:
            return scale_title(what, "data")
        return f"{what}<br>(colour capped<br>at p{self.q} = {self.zmax:.2g};<br>brighter cells<br>≥ cap)"


def data_cap(values, informative=None, q: int = CAP_PERCENTILE) -> Cap:
    """The top of a data-fitted colour scale: the q-th percentile of the informative cells (`informative`: a mask of
    the cells that carry information; left out: attention to itself, a query with one key to choose from, keys it
    cannot see). A few forced weights of 1.0 (an episode's first step attends only to itself) would otherwise set
    the top and leave every other cell dark. No cap where the percentile reaches the largest value shown."""
    v = np.asarray(values, dtype=float)
    finite = np.isfinite(v)
    top = float(v[finite].max()) if finite.any() else 0.0
    keep = finite if informative is None else finite & np.asarray(informative, bool)
    keep &= v > 0
    if not keep.any():
        return Cap(max(top, 1e-6), False, q)
    cap = float(np.percentile(v[keep], q))
    if cap <= 0 or cap >= top:
        return Cap(max(top, 1e-6), False, q)
    return Cap(cap, True, q)


def check_scale(scale: str) -> str:
    if scale not in SCALES:
        raise ValueError(f"scale must be 'data' (fitted to the values shown) or 'fixed' (the whole range), got {scale!r}.")
    return scale


def add_note(title: str, note: str) -> str:
    """`note` as its own subtitle line under a title (figure markup; the note carries no user names)."""
    return f"{title}<br><sup>{note}</sup>" if title else f"<sup>{note}</sup>"


_ACTION = re.compile(r"(?<!\()\baction (dimension )?(\d+)\b(?!\))")
_IN_PARENS = re.compile(r"\(action (dimension )?(\d+)\)")


def named_actions(text: str, names: list[str] | None) -> str:
    """An analysis' words with the dataset's action names in: "logit of action 1" -> "logit of push right (action 1)",
    "action dimension 0" -> "shoulder torque (action dimension 0)". Raw text: escape it (text.plain) where drawn."""
    if not names:
        return text

    def name(m):
        i = int(m.group(2))
        return None if i >= len(names) or readable(names[i]).startswith("action") else readable(names[i])

    def inside(m):   # "(action 1)" -> "(push right, action 1)"
        n = name(m)
        return m.group(0) if n is None else f"({n}, {m.group(0)[1:-1]})"

    def sub(m):
        n = name(m)
        return m.group(0) if n is None else f"{n} ({m.group(0)})"
    return _ACTION.sub(sub, _IN_PARENS.sub(inside, text))


def action_names(agent, dataset) -> list[str]:
    """The dataset's names for the agent's actions: one per discrete action, or one per continuous dimension."""
    c = getattr(agent, "config", None)
    env = getattr(c, "env_id", None)
    if getattr(agent, "discrete", False):
        return action_labels(dataset, getattr(c, "n_actions", None), env)
    return action_dim_names(dataset, int(getattr(agent, "act_dim", 0) or 0), env)


def top_margin(title: str, base: int = 60) -> int:
    """Room above the plot for a title of several lines (the template's 60 px hold a title and one subtitle line)."""
    return max(base, 38 + 22 * (title.count("<br>") + 1))
