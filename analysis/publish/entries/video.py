"""Catalog entry `episode_video`: one episode as an animation (GIF or MP4) with its overlays (issue 16).

From logged data (`--data`, episode N), or, with no dataset, a rollout of the agent in its environment (reset seed
`seed + episode`). The Figured carries an `analysis.media.video.EpisodeClip` (rendered and encoded only when a file is
written), a preview figure (the first frame with its overlay, or the state-line plot that stands in when no frame
can be drawn, its title saying why) and the per-step data (step, action, reward, return-to-go, attention).

imagine_start=S (imagine_horizon=H, default 20): a TT's or dynamics model's open-loop continuation from step S
(analysis.behaviour.predictions.imagined_continuation, the logged actions fed in) beside the real episode. The clip is then
the imagined stretch only, steps S to S + H: at S both panels show the logged state the model starts from, after it
the left panel the real frame and the right one the frame drawn from the imagined state, the overlay adding the L2
error between them. A lead-in of real-only frames would show the same picture twice in both panels, so none is
drawn (start and steps are left out); the real-only clip is the figure without imagine_start.
"""
from __future__ import annotations

import base64
import io
import numbers

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from analysis.publish.catalog import Figured, register
from analysis.publish.figures.text import plain
from analysis.media.frames import FramesError
from analysis.media.video import DEFAULT_WIDTH, VIDEO_FORMATS, EpisodeClip, VideoError, action_texts, overlay_frames

MAX_ATTENTION_STEPS = 1_000   # a banded DT's attention is one forward over the episode so far: 3T x 3T per layer
DEFAULT_IMAGINED_STEPS = 20   # steps of an imagined continuation unless imagine_horizon says otherwise


def _whole(name: str, value, low: int = 0, none: bool = False):
    if value is None and none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or value != int(value) or int(value) < low:
        raise VideoError(f"parameter {name} must be a whole number of at least {low}, got {value!r}.")
    return int(value)


def _positive(name: str, value):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value > 0:
        raise VideoError(f"parameter {name} must be a positive number, got {value!r}.")
    return float(value)


def _attention(agent, one_episode, steps: np.ndarray) -> tuple[np.ndarray | None, str | None]:
    """[m, K] the DT's action-token attention per step back at `steps` of a one-episode dataset (layers and heads
    averaged, token types summed), as it acts (analysis.interp.attention.steps_attention); None for other agents."""
    if agent is None or not (agent.has("step_tokens") and agent.has("attention")):   # the DT's own context window
        return None, None
    if steps.max() + 1 > MAX_ATTENTION_STEPS:
        return None, (f"The attention bar is left out: the agent's attention at step {int(steps.max())} takes a forward "
                      f"over the episode so far, and seqlens draws it up to step {MAX_ATTENTION_STEPS:,}.")
    from analysis.interp.attention import steps_attention
    from analysis.core.inputs import training_data

    w = steps_attention(agent, training_data(agent, one_episode), steps)   # [m, layers, heads, K, 3]
    return w.mean((1, 2)).sum(-1), None


def _rollout(agent, episode: int, seed: int, target, stop):
    """A one-episode Dataset of the agent acting in its environment, its attention [T, K] and return-to-go."""
    from models.env_choice import can_act
    from models.rollout import episode_dataset

    if not can_act(agent):
        raise VideoError("episode_video without a dataset rolls the agent out in its environment, and this agent names "
                         "none this machine can make; give a dataset (--data) or an environment (--env).")
    conditioned = agent.has("return_conditioned")
    if conditioned and target is None:
        from analysis.behaviour.sweeps import return_range

        target = return_range(agent)[1]     # the best return of its training data
    one, recorded, asked = episode_dataset(agent, seed + episode, target, seed=seed, limit=stop, attention=True)
    att = None
    if recorded is not None:   # [T, layers, heads, K, 3], oldest step first -> steps back, this step first
        att = recorded.mean((1, 2)).sum(-1)[:, ::-1].copy()
    rtg = asked if conditioned else one.returns_to_go     # a DT's: the target left after each reward
    return one, att, rtg, "return-to-go", float(target) if conditioned else None


def _imagine(agent, one, start: int, horizon: int):
    """The model's imagined continuation (analysis.behaviour.predictions.imagined_continuation), its failures one sentence."""
    from analysis.media.player import MAX_IMAGINED_STEPS
    from analysis.behaviour.predictions import ImagineError, imagined_continuation

    try:
        return imagined_continuation(agent, one, start, horizon, MAX_IMAGINED_STEPS)
    except ImagineError as e:
        if agent is None or not agent.has("dynamics"):
            raise VideoError(f"no side-by-side video of an imagined continuation: {e}") from None
        raise VideoError(f"imagine_start: {e}") from None


def _preview(clip: EpisodeClip) -> tuple[go.Figure, str | None]:
    """The first frame with its overlay, or the state-line plot that stands in (title: why), and that sentence."""
    from dataclasses import replace

    first = replace(clip, stop=clip.start + 1, max_frames=None)
    r = first.render()
    if r.frames is not None:
        from PIL import Image

        img = overlay_frames(r.frames, r.overlay)[0]
        H, W = img.shape[:2]
        png = io.BytesIO()
        Image.fromarray(img).save(png, format="PNG")   # a PNG source: ~30x less figure JSON than z= pixel lists
        fig = go.Figure(go.Image(source="data:image/png;base64," + base64.b64encode(png.getvalue()).decode()))
        fig.update_layout(template="seqlens", title=plain(clip.title), width=W + 40, height=H + 90,
                          margin=dict(l=20, r=20, t=60, b=20))
        fig.update_xaxes(visible=False)
        fig.update_yaxes(visible=False)
        return fig, None
    from analysis.publish.figures import episode_signals

    ep = clip.episode
    fig = episode_signals(ep.observations, ep.obs_names, f"{plain(clip.title)}<br><sup>{plain(r.why)}</sup>", "observation")
    return fig, r.why


@register("episode_video", "an episode as an animation (gif, mp4): step, action, reward, return-to-go and where a "
          "Decision Transformer's action token looks; with no dataset, a rollout in the agent's environment; with "
          "imagine_start, a TT's or dynamics model's imagined continuation beside the real frames",
          needs_agent=False, formats=VIDEO_FORMATS, rolls_out=True, error=VideoError)
def make_episode_video(agent, dataset, episode: int = 0, start: int = 0, steps: int | None = None,
                       width: int | None = DEFAULT_WIDTH, fps: float | None = None, max_frames: int | None = None,
                       target_return: float | None = None, seed: int = 0, imagine_start: int | None = None,
                       imagine_horizon: int | None = None) -> Figured:
    from analysis.media.player import MAX_IMAGINED_STEPS

    episode, start, seed = _whole("episode", episode), _whole("start", start), _whole("seed", seed)
    imagine_start = _whole("imagine_start", imagine_start, none=True)
    imagine_horizon = _whole("imagine_horizon", imagine_horizon, 1, none=True)
    if imagine_start is None and imagine_horizon is not None:
        raise VideoError("imagine_horizon is the length of an imagined continuation: give its first step too "
                         "(imagine_start).")
    if imagine_start is not None:
        imagine_horizon = DEFAULT_IMAGINED_STEPS if imagine_horizon is None else imagine_horizon
        if imagine_horizon > MAX_IMAGINED_STEPS:
            raise VideoError(f"parameter imagine_horizon must be 1 to {MAX_IMAGINED_STEPS} steps, got {imagine_horizon}.")
        if start or steps is not None:
            raise VideoError("with imagine_start the clip is the imagined stretch (imagine_start to imagine_start + "
                             "imagine_horizon): leave start and steps out.")
        if agent is None or not agent.has("dynamics"):
            _imagine(agent, None, imagine_start, imagine_horizon)   # its sentence, before any rollout
    steps = _whole("steps", steps, 1, none=True)
    width = _whole("width", width, 8, none=True)
    max_frames = _whole("max_frames", max_frames, 1, none=True)
    fps = _positive("fps", fps)
    if target_return is not None and (isinstance(target_return, bool) or not isinstance(target_return, numbers.Real)):
        raise VideoError(f"parameter target_return must be a number, got {target_return!r}.")
    stop = None if steps is None else start + steps
    notes, replay_seed, target = [], None, None
    if dataset is None:
        if agent is None:
            raise VideoError("episode_video needs a dataset (--data) or an agent to roll out in its environment (--agent).")
        one, att_all, rtg, label, target = _rollout(agent, episode, seed, target_return, stop)
        replay_seed = seed + episode
        title = f"Episode {episode}: {agent.kind.upper()} acting in {one.env_id} (reset seed {replay_seed}" + \
                (f", target return {target:g})" if target is not None else ")")
        if start >= one.n_transitions:
            raise VideoError(f"start {start} is past the rollout's end: the episode lasted {one.n_transitions} steps.")
    else:
        if not 0 <= episode < dataset.n_episodes:
            raise VideoError(f"episode {episode} is out of range: {dataset.source} has {dataset.n_episodes} episodes "
                             f"(0 to {dataset.n_episodes - 1}).")
        one = dataset.select([episode])
        att_all, rtg, label = None, one.returns_to_go, "return-to-go"
        title = f"Episode {episode} of {dataset.source}"
        if start >= one.n_transitions:
            raise VideoError(f"start {start} is past the episode's end: episode {episode} has {one.n_transitions} steps.")
    if imagine_start is not None:
        im = _imagine(agent, one, imagine_start, imagine_horizon)
        start, stop = im.start, im.start + im.horizon + 1
        title = f"{title}: real beside {im.label}"
        if im.horizon < imagine_horizon:
            notes.append(f"The episode ends {im.horizon} steps after step {im.start}, so the model imagines "
                         f"{im.horizon} steps, not {imagine_horizon}.")
    clip = EpisodeClip(one, one.env_id, title, rtg, label, None, None, start, stop, width, fps, max_frames, replay_seed)
    if imagine_start is not None:
        clip.imagined, clip.imagined_by, clip.error = im.episode, f"{im.model} from step {im.start}", im.error
    if dataset is not None and agent is not None and agent.has("return"):   # the DT's return head, one step ahead
        from analysis.behaviour.predictions import dt_return_predictions

        clip.predicted_return = dt_return_predictions(agent, one, 0)[0]
    planned = clip.planned_steps()
    if att_all is not None:
        clip.attention, clip.attention_steps = att_all[planned], planned
    elif dataset is not None:
        clip.attention, why = _attention(agent, one, planned)
        clip.attention_steps = planned if clip.attention is not None else None
        notes += [why] if why else []
    clip.notes = notes + clip.notes
    try:
        fig, _ = _preview(clip)
    except FramesError as e:
        raise VideoError(str(e)) from None
    idx = np.arange(start, start + len(one.rewards[start:stop]))
    from analysis.publish.figures.labels import action_labels

    # the data's own labels, else its environment's, else the agent's environment's (a CSV upload names none)
    env = getattr(getattr(agent, "config", None), "env_id", None)
    labels = action_labels(one, one.n_actions, env) if one.discrete else []
    data = pd.DataFrame({"step": idx, "action": action_texts(one.actions[idx], labels, one.act_names),
                         "reward": one.rewards[idx], label.replace("-", "_"): np.asarray(rtg)[idx]})
    if clip.predicted_return is not None:
        data["predicted_next_return_to_go"] = np.asarray(clip.predicted_return)[idx]
    if clip.attention is not None:
        full = np.full((len(idx), clip.attention.shape[1]), np.nan)
        full[np.searchsorted(idx, clip.attention_steps)] = clip.attention
        for k in range(full.shape[1]):
            data[f"attention_back_{k}"] = full[:, k]
    if imagine_start is not None:
        res = im.result
        for j, name in enumerate(res.features):
            data[f"imagined_{name}"] = res.predicted[idx, j]
        data["error_l2"] = im.error[idx]
        start = 0      # the params remake this figure: the clip's own start follows from imagine_start
    params = {"episode": episode, "start": start, "steps": steps, "width": width, "fps": fps, "max_frames": max_frames,
              "seed": seed, "imagine_start": imagine_start, "imagine_horizon": imagine_horizon}
    if target is not None:
        params["target_return"] = target
    return Figured("episode_video", fig, data, {k: v for k, v in params.items() if v is not None}, video=clip,
                   uses_dataset=dataset is not None)
