"""Catalog entry for spatial credit: which grid cells or pixels of each step's observation one output of a Decision
Transformer depends on (analysis/interp/spatial_credit.py), as a strip of the observations with the map laid over them."""
from __future__ import annotations

from analysis.core.cache import cached
from analysis.interp.spatial_credit import spatial_credit_step
from analysis.publish.catalog import Figured, register
from analysis.publish.compare_mode import Spec
from analysis.publish.figures.labels import action_names, data_name
from analysis.publish.figures.spatial import SCALES, spatial_compare, spatial_strip

BASELINES = ("mean", "zeros")   # IG's observation baseline: the per-token credit's default (the dataset's mean), or zeros


def _result(agent, dataset, episode, step, target, method, n_steps, baseline):
    """spatial_credit_step through the one cache: the figure and compare mode's pairing share one computation."""
    return cached("spatial_credit", lambda: spatial_credit_step(agent, dataset, int(episode), step, target=target,
                                                               method=method, n_steps=int(n_steps), baseline=baseline),
                  agent, dataset, episode=int(episode), step=step, target=target, method=method, n_steps=int(n_steps),
                  baseline=baseline)


def _join(fa, fb, agent_a, agent_b, dataset, label_a, label_b):
    """Compare mode (analysis/publish/compare_mode.py): both agents' credit on the explained step's observation, one
    scale, B − A where it informs (figures/spatial.spatial_compare)."""
    keys = ("episode", "step", "target", "method", "baseline")
    res = [_result(agent, dataset, *(f.params[k] for k in keys[:4]), f.params["n_steps"], f.params["baseline"])
           for agent, f in ((agent_a, fa), (agent_b, fb))]
    pair = spatial_compare(res[0], res[1], label_a, label_b, data=data_name(dataset),
                           action_names=action_names(agent_a, dataset))
    return pair.figure, pair.with_difference


@register("spatial_credit", "credit per grid cell or pixel of every step's observation in one DT window (saliency or "
          "integrated gradients through the state encoder), drawn over the observations, and summed over the window; "
          "compare mode: both agents on the explained step's observation, one scale, and B − A",
          compare=Spec("side", join=_join))
def make_spatial_credit(agent, dataset, episode: int = 0, step: int | None = None, target: str = "action",
                        method: str = "saliency", n_steps: int = 32,
                        scale: str = "window", baseline: str = "mean") -> Figured:
    if scale not in SCALES:   # before the attribution runs
        raise ValueError(f"scale must be one of {', '.join(SCALES)}, got {scale!r}.")
    if baseline not in BASELINES:
        raise ValueError(f"baseline must be one of {', '.join(BASELINES)}, got {baseline!r}.")
    res = _result(agent, dataset, episode, step, target, method, n_steps, baseline)
    fig = spatial_strip(res, data=data_name(dataset), action_names=action_names(agent, dataset), scale=scale)
    data = res.to_frame()
    data.attrs.update(method=method, target=target, delta=res.delta)
    return Figured("spatial_credit", fig, data, {"episode": int(episode), "step": res.step, "target": target,
                                                 "method": method, "n_steps": int(res.n_steps or n_steps),
                                                 "scale": scale, "baseline": baseline})
