"""The episode player's data (issue 16): for every drawn step of one logged episode, the frame and what the agent
computes there, precomputed once so the browser can play, pause and scrub without asking the server again.

Per step t (the steps `analysis.media.frames.plan_steps` draws: all of them up to `SEQLENS_MAX_FRAMES`, else evenly
spaced ones, said in a sentence):
- **frame**: `analysis.media.frames.from_data` (the environment put into the logged state), encoded small (lossless WebP,
  ~0.5 KB for a CartPole frame; PNG where Pillow has no WebP). When no frame can be drawn, `why` is the sentence and
  the observations are kept for the state-line plot that stands in.
- **attention** (Decision Transformers): where the action token (s_t) looks over its K context steps as the agent
  acts, layers and heads averaged, per token type: `analysis.interp.attention.steps_attention` (one batched pass; each row
  sums to 1). Up to MAX_ATTENTION_STEPS (a banded DT's pass covers the episode so far), else left out with a sentence.
- **credit**: saliency |d output / d input| (the Credit page's cheapest method, one batched backward over every
  window: `analysis.interp.attribution.attribute_steps`), as each token's share of the window's total. Batched up to
  MAX_CREDIT_STEPS steps, a recurrent agent's (one prefix at a time) up to MAX_SERIAL_CREDIT_STEPS, evenly spaced
  beyond (a sentence says which steps have it).
- **prediction**: a DT's return head (predicted R(t+1) and the implied reward, `analysis.behaviour.predictions`), or the
  one-step next state and reward of a Trajectory Transformer or dynamics model, beside what really followed. A DT's
  state head is untrained (as in Hugging Face's model) and is not shown.

`player_data` goes through the one cache (analysis/core/cache.py), keyed on agent and dataset content, the episode and
every bound in force; the result holds plain arrays and strings, and callers must not change it.
"""
from __future__ import annotations

import base64
import io
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from analysis.media import frames as _frames
from analysis.core.cache import cached, report

DISPLAY_HEIGHT = 288            # px the browser shows a frame at: CartPole 432 x 288, Key-to-Door 240 x 288 (3x)
MAX_MUJOCO_FRAMES = 500         # a MuJoCo episode's frames at most (evenly spaced): a D4RL Hopper episode is 1,000 steps
MAX_ATTENTION_STEPS = 1_000     # a banded DT's attention at step t is one forward over the episode so far (3t tokens)
MAX_CREDIT_STEPS = 500          # saliency windows in one batched backward (~1.5 s for 500 CartPole steps, 2 busy cores)
MAX_SERIAL_CREDIT_STEPS = 100   # a recurrent agent: one backward over the episode so far per step
SERIAL_CREDIT_BACK = 20         # a recurrent agent's credit bar: its last 20 steps (shares of the whole prefix)
MAX_IMAGINED_STEPS = 50         # an open-loop imagined continuation (the Predicted vs real page's horizon bound)
CREDIT_TARGETS = {"action": "the action taken", "value": "the value (return predicted with the return-to-go hidden)"}


class PlayerError(ValueError):
    """An episode or setting the player cannot show; str() is one sentence."""


@dataclass
class PlayerData:
    """One episode, per drawn step: frame, overlays and the agent's attention, credit and predictions."""

    title: str
    episode: int
    length: int                       # the episode's steps (the player may show fewer)
    steps: np.ndarray                 # [n] episode step of each player step
    frames: list[str] | None          # [n] base64 images (frame_mime), or None: no frame can be drawn
    frame_mime: str
    frame_size: tuple[int, int]       # (W, H) of the frames as drawn; (0, 0) without frames
    display_size: tuple[int, int]     # (W, H) the browser shows them at (scaled by CSS: no resampling here)
    why: str                          # how the frames were made, or why there are none (one sentence)
    fps: float                        # the environment's real-time frame rate
    actions: list[str]                # [n] the action taken, as text
    rewards: np.ndarray               # [n]
    rtg: np.ndarray                   # [n] return-to-go (the dataset's: what was earned from t on)
    obs: np.ndarray                   # [n, F] observations (the state-line plot without frames)
    obs_names: list[str]
    attention: np.ndarray | None = None   # [n, K, 3] share per step back (0 = now) and token type R, s, a
    credit: np.ndarray | None = None      # [n, L, 3] share of |saliency| per step back and token; NaN: not computed
    credit_label: str = ""
    prediction: dict | None = None        # {"kind": "return" | "state", "label", "features", "real" [n, F],
                                          #  "predicted" [n, F], "note"}
    notes: list[str] = field(default_factory=list)   # every bound that cut something, and why a panel is missing
    imagined: dict | None = None          # {"start", "horizon", "label", "frames" [n] base64 or None, "why"}: the
                                          # model's open-loop continuation drawn as frames (TT, dynamics model)

    @property
    def n(self) -> int:
        return len(self.steps)

    def to_json(self) -> dict:
        """Plain lists for the browser (numbers rounded to what a 200 px bar can show; NaN as null)."""
        def rounded(a, digits=4):
            if a is None:
                return None
            a = np.round(np.asarray(a, np.float64), digits)
            return np.where(np.isfinite(a), a, np.nan).tolist()

        def nulls(x):   # json has no NaN
            if isinstance(x, list):
                return [nulls(v) for v in x]
            return None if isinstance(x, float) and x != x else x

        pred = None
        if self.prediction is not None:
            p = self.prediction
            pred = {"kind": p["kind"], "label": p["label"], "features": list(p["features"]), "note": p.get("note", ""),
                    "real": nulls(rounded(p["real"], 5)), "predicted": nulls(rounded(p["predicted"], 5))}
        return {"title": self.title, "episode": self.episode, "length": self.length, "steps": self.steps.tolist(),
                "frames": self.frames, "mime": self.frame_mime, "size": list(self.frame_size),
                "display": list(self.display_size), "why": self.why,
                "fps": self.fps, "actions": self.actions, "rewards": nulls(rounded(self.rewards)),
                "rtg": nulls(rounded(self.rtg)), "obs": nulls(rounded(self.obs, 5)), "obs_names": self.obs_names,
                "attention": nulls(rounded(self.attention)), "credit": nulls(rounded(self.credit)),
                "credit_label": self.credit_label, "prediction": pred, "notes": self.notes,
                "imagined": None if self.imagined is None else dict(self.imagined)}


# ---- frames ---------------------------------------------------------------------------------------------
def _image_format() -> tuple[str, str, dict]:
    from PIL import features

    if features.check("webp"):
        # ~0.5 KB a 600 x 400 CartPole frame in ~1.5 ms (method 0 wrote 9 KB; quality is the effort when lossless)
        return "WEBP", "image/webp", {"lossless": True, "method": 1, "quality": 0}
    return "PNG", "image/png", {}


def _encoder(lossy: bool = False):
    """A function of one frame [H, W, 3] uint8 -> its base64 image, and the MIME type. Lossless keeps line art crisp
    (CartPole ~0.5 KB); a MuJoCo render (shading, a textured floor) is ~38 KB lossless at 288 px and ~16 KB lossy."""
    from PIL import Image

    fmt, mime, kw = _image_format()
    if lossy and fmt == "WEBP":
        kw = {"quality": 75, "method": 0}

    def one(f: np.ndarray) -> str:
        buf = io.BytesIO()
        Image.fromarray(f).save(buf, format=fmt, **kw)
        return base64.b64encode(buf.getvalue()).decode("ascii")
    return one, mime


def encode_frames(frames: np.ndarray) -> tuple[list[str], str]:
    """Base64 images of frames [n, H, W, 3] uint8 and their MIME type."""
    one, mime = _encoder()
    return [one(f) for f in frames], mime


def decode_frame(b64: str) -> np.ndarray:
    """[H, W, 3] uint8 of one encoded frame (tests, checks)."""
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(base64.b64decode(b64))).convert("RGB"))


def _drawn_frames(one, height: int | None, max_frames, max_bytes, start: int = 0, stop: int | None = None):
    """(Frames, base64 images or None, MIME type, (W, H)) of a one-episode dataset (steps start to stop), each frame
    encoded as it is drawn (none of them held)."""
    mujoco = bool(one.env_id) and _frames.is_mujoco(one.env_id)
    encode, mime = _encoder(lossy=mujoco)
    shape = []

    def each(f):
        shape[:] = f.shape
        return encode(f)
    if mujoco and height is None:   # rendered at the size shown: a software GL's cost grows with the pixels
        height = DISPLAY_HEIGHT
    fr = _frames.from_data(one, 0, height=height, max_frames=max_frames, max_bytes=max_bytes, start=start, stop=stop,
                           each=each, fast=mujoco)
    if not fr.ok:
        return fr, None, "", (0, 0)
    images, fr.frames = fr.frames, None
    return fr, images, mime, (int(shape[1]), int(shape[0]))


# ---- the agent at each step --------------------------------------------------------------------------------
def _attention(agent, one, steps: np.ndarray) -> tuple[np.ndarray | None, str | None]:
    """[n, K, 3]: the action token's attention per step back and token type, layers and heads averaged."""
    if not (agent.has("step_tokens") and agent.has("attention")):   # per step back and token type (R, s, a)
        return None, None
    if steps.max() + 1 > MAX_ATTENTION_STEPS:
        return None, (f"The attention panel is left out: the agent's attention at step {int(steps.max())} takes a "
                      f"forward over the episode so far, and the player draws it up to step {MAX_ATTENTION_STEPS:,}.")
    from analysis.interp.attention import steps_attention
    from analysis.core.inputs import training_data

    w = steps_attention(agent, training_data(agent, one), steps)    # [n, layers, heads, K, 3]
    return w.mean((1, 2)).astype(np.float64), None


def _credit(agent, one, steps: np.ndarray, target: str) -> tuple[np.ndarray | None, str, str | None]:
    """[n, L, 3] share of |saliency| per step back (0 = now) and token (R, s, a); NaN rows where not computed."""
    if not agent.has("action"):
        return None, "", None
    if target != "action" and not agent.has(target):
        raise PlayerError(f"credit for the {target} needs a Decision Transformer; this {agent.kind} agent predicts "
                          "only actions.")
    if one.shaped:   # saliency here is per vector feature; credit on cells and pixels is issue 23's item 4
        return None, "", (f"Credit is not drawn for {one.obs_shape_text} {one.obs_kind} yet (it is computed per vector "
                          "feature).")
    from analysis.interp.attribution import attribute_steps

    serial = agent.has("recurrent")
    cap = MAX_SERIAL_CREDIT_STEPS if serial else MAX_CREDIT_STEPS
    idx = np.arange(len(steps))
    note = None
    if len(steps) > cap:
        idx = np.unique(np.linspace(0, len(steps) - 1, cap).round().astype(np.int64))
        why = ("one backward over the episode so far per step" if serial else "one batched backward over every window")
        note = (f"Credit is computed at {len(idx)} evenly spaced steps of the {len(steps):,} shown ({why}); the other "
                "steps show no credit bar.")
    L = SERIAL_CREDIT_BACK if serial else agent.context_length
    out = np.full((len(steps), L, 3), np.nan)
    results = attribute_steps(agent, one, steps[idx], target=target, method="saliency", randomized=False)
    for i, res in zip(idx, results):
        tok = res.trained.per_token()[::-1]          # [window, 3], now first
        total = tok.sum()
        share = tok / total if total > 0 else tok
        keep = share[:L]
        out[i] = 0.0
        out[i, :len(keep)] = keep
    label = {"action": "the action taken", "value": "the value", "return": "the predicted return"}[target]
    if serial:
        note = " ".join(n for n in [note, f"A recurrent agent's credit reaches back to the episode's start; the bar "
                                          f"shows the last {L} steps (shares of the whole)."] if n)
    return out, f"saliency |∂f/∂x| for {label}, share per token", note


def _prediction(agent, one, steps: np.ndarray) -> dict | None:
    """One step ahead, beside what really followed: a DT's R(t+1) and implied reward; a TT's or dynamics model's
    next state and reward."""
    T = one.n_transitions
    rtg = one.returns_to_go.astype(np.float64)
    if agent.has("return"):
        from analysis.behaviour.predictions import DT_STATE_NOTE, dt_return_predictions

        next_return, implied = dt_return_predictions(agent, one, 0)
        real = np.stack([np.append(rtg[1:], 0.0), one.rewards.astype(np.float64)], 1)
        pred = np.stack([next_return, implied], 1)
        return {"kind": "return", "label": "DT return head, one step ahead", "features": ["return-to-go R(t+1)", "reward"],
                "real": real[steps], "predicted": pred[steps], "note": DT_STATE_NOTE}
    if not agent.has("dynamics"):
        return None
    from analysis.behaviour.predictions import default_context, open_loop

    obs = one.observations.astype(np.float64)
    real = np.full((T, one.obs_dim + 1), np.nan)
    real[:-1, :-1] = obs[1:]                       # the state each action led to (none after the last)
    real[:, -1] = one.rewards
    pred = np.full_like(real, np.nan)
    tt = agent.has("tokens")
    # the logged transitions the model reads: a TT's context, a dynamics model's history (0: one-step)
    ctx = min(default_context(agent, 1), agent.context_length - 1) if tt else default_context(agent, 1)
    tokens = agent.encode_transitions(one.observations, one.actions, one.rewards) if tt else None
    groups = [(ctx, steps[steps >= ctx])] + [(int(t), np.array([t])) for t in steps[steps < ctx]]
    batch = 256 if tt else 1024
    for c, s in groups:                            # a step with fewer logged steps before it sees what there is
        for i in range(0, len(s), batch):
            o, r = open_loop(agent, one, s[i:i + batch], 1, c, tokens)
            pred[s[i:i + batch], :-1], pred[s[i:i + batch], -1] = o[:, 0], r[:, 0]
    label = ("TT, one step ahead (logged history, argmax bins)" if tt else
             "dynamics model, one step ahead" + (f" (its {ctx} logged transitions of history)" if ctx else ""))
    pred[T - 1, :-1] = np.nan                      # nothing real to compare after the last step
    floor = agent.cfg.obs_quantization_floor if agent.has("tokens") else None
    note = "Each step: the state and reward after the logged action, predicted from the logged history." + (
        f" The TT's quantization floor is {floor:.3g} mean L2." if floor is not None else "")
    return {"kind": "state", "label": label, "features": [*one.obs_names, "reward"], "real": real[steps], "predicted": pred[steps],
            "note": note}


def _imagined(agent, one, steps: np.ndarray, start: int, horizon: int):
    """The model's open-loop continuation from `start` (analysis.behaviour.predictions.imagined_continuation): (prediction at
    `steps`, the episode with the imagined states in place of the logged ones, start, horizon); analysis.media.frames draws
    the imagined episode's states as frames (build)."""
    from analysis.behaviour.predictions import ImagineError, imagined_continuation

    try:
        im = imagined_continuation(agent, one, int(start), int(horizon), MAX_IMAGINED_STEPS)
    except ImagineError as e:
        raise PlayerError(str(e)) from None
    res = im.result
    prediction = {"kind": "state", "label": im.label, "features": list(res.features), "real": res.real[steps],
                  "predicted": res.predicted[steps], "note": res.note}
    return prediction, im.episode, im.start, im.horizon


# ---- one episode ------------------------------------------------------------------------------------------
def _rolled_out(agent, seed: int, target):
    """(One-episode Dataset, the DT's attention as it acted [T, layers, heads, K, 3] or None, the return-to-go it was
    asked for at each step or None, its target) of the agent acting in its environment (reset seed `seed`)."""
    from models.env_choice import can_act
    from models.rollout import episode_dataset

    if agent is None or not agent.has("acts") or not can_act(agent):
        raise PlayerError("a rollout needs an agent that acts in an environment this machine can make; this one does "
                          "not (choose the dataset as the source, or an Environment on the home page).")
    if agent.has("planning"):
        raise PlayerError("a Trajectory Transformer plans by beam search at every step (seconds a step), too slow to "
                          "roll out here; play a dataset episode, or roll it out with `cli.py evaluate`.")
    if agent.has("return_conditioned") and target is None:
        from analysis.behaviour.sweeps import return_range

        try:
            target = return_range(agent)[1]
        except ValueError:
            raise PlayerError("the agent records no training returns: give the rollout a target return.") from None
    one, acted, asked = episode_dataset(agent, int(seed), target, seed=int(seed), attention=True)
    return one, acted, asked, target


def build(agent, dataset, episode: int = 0, credit: str = "action", height: int | None = None,
          max_frames: int | None = None, max_bytes: int | None = None,
          imagine: tuple[int, int] | None = None, rollout: tuple[int, float | None] | None = None) -> PlayerData:
    """The player's data for `episode` of `dataset` (uncached: see player_data). Frames are drawn at the
    environment's own size (height: another, resampled by analysis.media.frames) and shown DISPLAY_HEIGHT px high by the
    browser: resampling 500 CartPole frames here took longer than drawing them. imagine=(start, horizon): a model
    that predicts states open loop (TT, dynamics model) shows its imagined continuation from `start` (prediction panel
    and frames) instead of its one-step predictions. rollout=(seed, target): instead of the dataset, one episode of
    the agent acting in its environment (reset seed `seed`; a DT asked for `target`, default its best training
    return), with a DT's attention as it acted."""
    import envs

    from analysis.media.video import action_texts

    if credit not in CREDIT_TARGETS:
        raise PlayerError(f"credit is shown for {' or '.join(CREDIT_TARGETS)}, not '{credit}'.")
    acted = asked = None
    if rollout is not None:
        report(0.02, "the agent acting in its environment")
        dataset, acted, asked, target = _rolled_out(agent, int(rollout[0]), rollout[1])
        episode = 0
    elif not 0 <= int(episode) < dataset.n_episodes:
        raise PlayerError(f"episode {episode} is out of range: {dataset.source} has {dataset.n_episodes} episodes "
                          f"(0 to {dataset.n_episodes - 1}).")
    episode = int(episode)
    one = dataset.select([episode])
    T = one.n_transitions
    if one.env_id and _frames.is_mujoco(one.env_id):   # ~15 ms a frame on a software GL, ~16 KB each to the browser
        max_frames = min(_frames.limit("max_frames", max_frames), MAX_MUJOCO_FRAMES)
    steps, cut = _frames.plan_steps(T, max_frames, "even")
    notes = [cut] if cut else []
    # the frames are drawn and encoded in a second thread while the model runs in this one (rendering, Pillow and
    # torch release the GIL for most of their work); only this thread reports progress (it holds the page's context)
    with ThreadPoolExecutor(1, thread_name_prefix="seqlens-frames") as pool:
        drawn = pool.submit(_drawn_frames, one, None if height is None else int(height), max_frames, max_bytes)
        attention = credit_rows = prediction = imagined = dreamt = None
        label, panel_notes = "", []
        if agent is not None:
            report(0.05, "attention")
            if acted is not None:   # as it acted: [T, layers, heads, K, 3] oldest first -> now first
                attention, why = acted[steps].mean((1, 2))[:, ::-1].astype(np.float64), None
            else:
                attention, why = _attention(agent, one, steps)
            panel_notes += [why] if why else []
            report(0.15, "credit (saliency)")
            if one.shaped:   # saliency per token over a grid / frame stack: the Credit assignment page (pixel credit)
                panel_notes.append(f"Credit over the context is not shown for {one.obs_shape_text} {one.obs_kind}: the "
                                   "Credit assignment page splits it over cells and pixels.")
            else:
                credit_rows, label, why = _credit(agent, one, steps, credit)
                panel_notes += [why] if why else []
            report(0.6, "predictions")
            if imagine is not None and agent.has("dynamics"):   # drawn after the episode, in the same thread
                prediction, dream, s0, H = _imagined(agent, one, steps, int(imagine[0]), int(imagine[1]))
                dreamt = pool.submit(_drawn_frames, dream, height, None, max_bytes, s0, s0 + H + 1)
            else:
                prediction = _prediction(agent, one, steps)
            report(0.7, "frames")
        fr, images, mime, size = drawn.result()
        if dreamt is not None:
            dfr, dimages, _, _ = dreamt.result()
            at = dict(zip(dfr.steps.tolist(), dimages or []))
            imagined = {"start": s0, "horizon": H, "label": f"imagined from step {s0}",
                        "frames": [at.get(int(t)) for t in steps], "why": None if dimages else dfr.why}
    if images is not None:
        if not np.array_equal(fr.steps, steps):   # frames.from_data plans the same steps; a change there shows here
            raise AssertionError("frames.from_data drew other steps than plan_steps planned")
        if fr.note and fr.note != cut:
            notes.append(fr.note.replace(cut, "").strip() if cut else fr.note)
    notes += panel_notes
    labels = list(one.metadata.get("action_labels") or []) or envs.ACTION_LABELS.get(one.env_id or "")
    display = (round(size[0] * DISPLAY_HEIGHT / size[1]), DISPLAY_HEIGHT) if images is not None else (0, 0)
    rtg = one.returns_to_go.astype(np.float64) if asked is None else asked
    if asked is not None:   # the offline panels read the rewards' own return-to-go; the agent was asked for the target
        gap = float(target) - float(one.rewards.sum(dtype=np.float64))
        readers = "Predictions" if one.shaped else "Credit and predictions"   # no context credit on shaped data
        notes.append("Attention is the agent's as it acted; the return-to-go shown is what it was asked for (target "
                     f"{float(target):g} less the rewards so far). {readers} read the return-to-go of the "
                     f"rewards it earned, as for logged data: {'the same' if abs(gap) < 1e-6 else f'{gap:+g} apart'}"
                     f" (target less the return, {float(one.rewards.sum()):g}).")
    title = f"Episode {episode} of {dataset.source}" if rollout is None else f"The agent acting: {dataset.source}"
    data = PlayerData(title, episode, T, steps, images, mime, size, display, fr.why,
                      float(fr.fps or 30.0), action_texts(one.actions[steps], labels, one.act_names),
                      one.rewards[steps].astype(np.float64), rtg[steps],
                      # a grid / frame stack is the frame itself (the agent's view): no state lines of its values
                      np.zeros((len(steps), 0)) if one.shaped else one.observations[steps].astype(np.float64),
                      list(one.obs_names), attention, credit_rows, label,
                      prediction, notes, imagined)
    if agent is None:
        return data
    if agent.has("tokens"):
        notes.append("A Trajectory Transformer reads one token per dimension: its attention is on the Attention page; "
                     "credit (captum) covers Decision Transformers, MLP and GRU policies.")
    elif not agent.has("acts"):
        notes.append("A dynamics model has no attention and takes no actions: it shows its predictions only.")
    report(1.0, "done")
    return data


def player_data(agent, dataset, episode: int = 0, credit: str = "action", height: int | None = None,
                max_frames: int | None = None, max_bytes: int | None = None,
                imagine: tuple[int, int] | None = None, rollout: tuple[int, float | None] | None = None) -> PlayerData:
    """build() through the one cache: keyed on agent and dataset content, the episode, the credit target, the frame
    height and the frame bounds in force (SEQLENS_MAX_FRAMES / SEQLENS_MAX_FRAME_BYTES are read now, so changing
    them makes a new entry). Every caller gets its own copy."""
    bounds = {"max_frames": _frames.limit("max_frames", max_frames), "max_bytes": _frames.limit("max_bytes", max_bytes)}
    imagine = None if imagine is None else (int(imagine[0]), int(imagine[1]))
    if rollout is not None:   # the episode is the agent's own: the dataset plays no part (nor in the key)
        rollout, dataset, episode = (int(rollout[0]), None if rollout[1] is None else float(rollout[1])), None, 0
    return cached("player", lambda: build(agent, dataset, episode, credit, height, imagine=imagine, rollout=rollout,
                                          **bounds), agent,
                  dataset, episode=int(episode), credit=credit, height=None if height is None else int(height),
                  imagine=imagine, rollout=rollout, **bounds)
