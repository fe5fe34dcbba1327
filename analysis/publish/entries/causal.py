"""Catalog entries for causal views: activation patching, direct logit attribution, logit lens (issue 14).

Every parameter has a default, so `cli.py export --figure patching_positions --agent A` works with only an agent:
the clean input is episode 0 at its middle step (Key-to-Door: a key-taken episode at its first phase-3 step), the
corrupted one the next episode at that step (Key-to-Door: an episode without the key), the output the logit of the
logged action. corrupt: "episode" | "rtg" | "key" (default "key" on Key-to-Door data, else "episode")."""
from __future__ import annotations

from analysis.interp.attribution_markers import is_key_to_door
from analysis.core.cache import cached
from analysis.publish.catalog import Figured, register
from analysis.interp.dla import direct_logit_attribution, logit_lens
from analysis.publish.figures.causal import dla_bars, logit_lens_map, patching_map
from analysis.publish.figures.labels import action_names, check_scale, data_name
from analysis.interp.patching import make_pair, patcher, readout


def _int(v):
    return None if v is None else int(v)


def _patching(kind: str, agent, dataset, episode, step, corrupt, corrupt_episode, corrupt_step, rtg_shift, output,
              action, metric, context):
    readout(agent, output, _int(action), metric)           # the output's sentence first (no value head, range)
    corrupt = corrupt or ("key" if is_key_to_door(dataset) else "episode")
    pair = make_pair(agent, dataset, _int(episode), _int(step), corrupt, _int(corrupt_episode), _int(corrupt_step),
                     None if rtg_shift is None else float(rtg_shift), _int(context))

    def compute():
        p = patcher(agent, pair, output, _int(action), metric)
        return p.positions() if kind == "positions" else p.heads()

    (e, s), (ce, cs) = pair.clean_at, pair.corrupted_at
    grid = cached(f"patching_{kind}", compute, agent, dataset, episode=e, step=s, corrupt=corrupt, corrupt_episode=ce,
                  corrupt_step=cs, rtg_shift=pair.rtg_shift, output=output, action=_int(action), metric=metric,
                  context=_int(context))
    params = {"episode": e, "step": s, "corrupt": corrupt, "corrupt_episode": ce, "corrupt_step": cs,
              "rtg_shift": pair.rtg_shift if corrupt == "rtg" else None, "output": output,
              "action": grid.readout.index if output == "action" else None, "metric": metric, "context": _int(context)}
    return grid, params


@register("patching_positions", "activation patching: each layer's residual stream at each token position, from a "
          "clean into a corrupted input (normalised effect on one output)")
def make_patching_positions(agent, dataset, episode: int | None = None, step: int | None = None,
                            corrupt: str | None = None, corrupt_episode: int | None = None,
                            corrupt_step: int | None = None, rtg_shift: float | None = None, output: str = "action",
                            action: int | None = None, metric: str = "logit", context: int | None = None) -> Figured:
    grid, params = _patching("positions", agent, dataset, episode, step, corrupt, corrupt_episode, corrupt_step,
                             rtg_shift, output, action, metric, context)
    fig = patching_map(grid, action_names=action_names(agent, dataset), data=data_name(dataset))
    return Figured("patching_positions", fig, grid.to_frame(), params)


@register("patching_heads", "activation patching: each head's and each MLP's output, from a clean into a corrupted "
          "input (normalised effect on one output)")
def make_patching_heads(agent, dataset, episode: int | None = None, step: int | None = None, corrupt: str | None = None,
                        corrupt_episode: int | None = None, corrupt_step: int | None = None,
                        rtg_shift: float | None = None, output: str = "action", action: int | None = None,
                        metric: str = "logit", context: int | None = None) -> Figured:
    grid, params = _patching("heads", agent, dataset, episode, step, corrupt, corrupt_episode, corrupt_step,
                             rtg_shift, output, action, metric, context)
    fig = patching_map(grid, action_names=action_names(agent, dataset), data=data_name(dataset))
    return Figured("patching_heads", fig, grid.to_frame(), params)


@register("direct_logit_attribution", "each head's, MLP's, the embedding's and the biases' contribution to one output "
          "at a step (final layer norm's scale frozen; the parts sum to the output)")
def make_direct_logit_attribution(agent, dataset, episode: int = 0, step: int | None = None, output: str = "action",
                                  action: int | None = None, context: int | None = None) -> Figured:
    dla = cached("direct_logit_attribution", lambda: direct_logit_attribution(
        agent, dataset, int(episode), _int(step), output, _int(action), _int(context)), agent, dataset,
        episode=int(episode), step=_int(step), output=output, action=_int(action), context=_int(context))
    params = {"episode": dla.episode, "step": dla.step, "output": output, "action": _int(action), "context": _int(context)}
    fig = dla_bars(dla, action_names=action_names(agent, dataset), data=data_name(dataset))
    return Figured("direct_logit_attribution", fig, dla.to_frame(), params)


@register("logit_lens", "the output head read from every layer's residual stream at each step of an episode: at "
          "which layer the action (or value) is decided")
def make_logit_lens(agent, dataset, episode: int = 0, output: str = "action", action: int | None = None,
                    context: int | None = None, max_steps: int = 250, scale: str = "data") -> Figured:
    """scale "data": the colours span the values shown; "fixed": the quantity's whole range (0-1 for a probability)."""
    check_scale(scale)
    lens = cached("logit_lens", lambda: logit_lens(agent, dataset, int(episode), output, _int(action), _int(context),
                                                   int(max_steps)), agent, dataset, episode=int(episode),
                  output=output, action=_int(action), context=_int(context), max_steps=int(max_steps))
    params = {"episode": int(episode), "output": output, "action": _int(action), "context": _int(context),
              "max_steps": int(max_steps), "scale": scale}
    fig = logit_lens_map(lens, action_names=action_names(agent, dataset), data=data_name(dataset), scale=scale)
    return Figured("logit_lens", fig, lens.to_frame(), params)
