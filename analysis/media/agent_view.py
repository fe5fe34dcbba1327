"""What a grid / pixel agent sees, as a picture (issue 23, item 4): its own observation drawn beside the environment's
full render, for the Episode player, episode videos and live play.

- **A MiniGrid view** (v x v x 3 object/colour/state codes, or DTI's one-hot v x v x 20, converted back to codes) is
  drawn with MiniGrid's own tiles (`Grid.decode` + `Grid.render`: a wall's tile is its colour, a key or ball its shape
  in its colour on black), the agent at the bottom centre facing up (MiniGrid's egocentric view); cells the agent
  cannot see (code 0, "unseen") are painted UNSEEN so they differ from empty floor.
- **An Atari frame stack** (4 x 84 x 84 uint8): its last frame, the current one, enlarged by a whole factor with
  nearest-neighbour (every pixel the agent read stays one visible block).
- **The full state**: an env rollout records its reset seed (`Dataset.metadata["reset_seed"]`), so its actions are
  replayed in the agent's environment (models/rollout.make_agent_env) and each full render (MiniGrid's rgb grid,
  Atari's colour screen) drawn beside the view, the replay checked against the recorded observations. A dataset
  episode without a seed has only the agent's view: that alone is shown, and `why` says so.
"""
from __future__ import annotations

import numpy as np

UNSEEN = (40, 40, 56)      # a cell outside the agent's sight (not floor, which MiniGrid draws black)
GAP = (236, 236, 240)      # the rule between the view and the full render, and the padding of the shorter one
ATARI_SHAPE = (4, 84, 84)


def obs_kind(shape) -> str | None:
    """"grid" (a square v x v MiniGrid view, 3 codes or 20 one-hot bits a cell), "atari" (4x84x84) or None."""
    from envs.minigrid_dti import ONE_HOT_BITS

    shape = tuple(int(n) for n in shape)
    if shape == ATARI_SHAPE:
        return "atari"
    if len(shape) == 3 and shape[0] == shape[1] and shape[2] in (3, ONE_HOT_BITS):
        return "grid"
    return None


def codes(image: np.ndarray) -> np.ndarray:
    """(v, v, 3) object/colour/state codes of a coded or one-hot view (one-hot: argmax over each of its three parts)."""
    from minigrid.core.constants import COLOR_TO_IDX, OBJECT_TO_IDX

    image = np.asarray(image)
    if image.shape[-1] == 3:
        return image.astype(np.uint8)
    o, c = len(OBJECT_TO_IDX), len(COLOR_TO_IDX)
    parts = (image[..., :o], image[..., o:o + c], image[..., o + c:])
    return np.stack([p.argmax(-1) for p in parts], -1).astype(np.uint8)


def grid_view(image: np.ndarray, tile: int = 32, agent: bool = True) -> np.ndarray:
    """[v * tile, v * tile, 3] uint8: a MiniGrid view drawn as MiniGrid draws cells, the agent (agent=True) at the
    bottom centre facing up, unseen cells UNSEEN."""
    from minigrid.core.grid import Grid

    c = codes(image)
    v = c.shape[0]
    # MiniGrid's encodings index [x, y]; Grid.decode reads them so, and renders rows as y
    grid, _ = Grid.decode(c)
    img = grid.render(int(tile), agent_pos=(v // 2, v - 1) if agent else None, agent_dir=3 if agent else None)
    unseen = c[..., 0] == 0   # [x, y]
    if unseen.any():
        mask = np.repeat(np.repeat(unseen.T, tile, 0), tile, 1)
        img[mask] = UNSEEN
    return np.ascontiguousarray(img, np.uint8)


def pixel_view(stack: np.ndarray, scale: int = 2) -> np.ndarray:
    """[84 * scale, 84 * scale, 3] uint8: the stack's last frame (the current one), grey, enlarged nearest-neighbour."""
    frame = np.asarray(stack)[-1].astype(np.uint8)
    big = np.repeat(np.repeat(frame, int(scale), 0), int(scale), 1)
    return np.repeat(big[..., None], 3, -1)


def view(obs: np.ndarray, height: int | None = None) -> np.ndarray | None:
    """The agent's observation as a picture about `height` px high (a whole tile / pixel factor), or None for a shape
    that is neither a MiniGrid view nor an Atari stack."""
    kind = obs_kind(np.shape(obs))
    if kind == "grid":
        v = np.shape(obs)[0]
        return grid_view(obs, max(4, (height or 32 * v) // v))
    if kind == "atari":
        return pixel_view(obs, max(1, (height or 168) // 84))
    return None


def beside(left: np.ndarray, right: np.ndarray | None) -> np.ndarray:
    """[max H, W1 + gap + W2, 3]: the agent's view and the full render next to each other, the shorter centred on
    the rule's colour; `right` None: the view alone."""
    if right is None:
        return left
    H = max(left.shape[0], right.shape[0])
    gap = max(4, left.shape[1] // 40 * 2)
    out = np.empty((H, left.shape[1] + gap + right.shape[1], 3), np.uint8)
    out[:] = GAP
    for img, x in ((left, 0), (right, left.shape[1] + gap)):
        y = (H - img.shape[0]) // 2
        out[y:y + img.shape[0], x:x + img.shape[1]] = img
    if out.shape[1] % 2:   # an even width for MP4
        out = np.concatenate([out, np.broadcast_to(np.array(GAP, np.uint8), (H, 1, 3))], 1)
    return out


def replay_renders(env_id: str, observations, actions, seed: int, steps, agent_shape) -> tuple[list | None, str]:
    """(full renders at `steps`, how) of an episode replayed from reset `seed` in the agent's environment (the view's
    shape sets DTI's wrappers), or (None, why not: a clause). The replay must reproduce every recorded observation up
    to the last step drawn."""
    from models.rollout import make_agent_env

    try:
        env = make_agent_env(env_id, render_mode="rgb_array", obs_shape=agent_shape)
    except Exception as e:  # noqa: BLE001 - a missing package (ale-py, minigrid) or an id seqlens refuses
        return None, f"{env_id} cannot be made here ({type(e).__name__})"
    wanted = {int(s) for s in steps}
    out = {}
    try:
        obs, _ = env.reset(seed=int(seed))
        last = max(wanted) if wanted else -1
        for t in range(last + 1):
            if not np.array_equal(np.asarray(obs), np.asarray(observations[t])):
                return None, (f"replaying its actions in {env_id} from reset seed {seed} did not reproduce its "
                              f"observation at step {t}")
            if t in wanted:
                out[t] = np.asarray(env.render(), np.uint8)
            if t < last:
                obs, *_ = env.step(int(np.asarray(actions[t]).reshape(-1)[0]))
    finally:
        env.close()
    return [out[int(s)] for s in steps], f"replayed in {env_id} from reset seed {seed}"


def episode_frames(observations, actions, steps, env_id: str | None, seed, height: int | None = None, each=None,
                   fit=None) -> tuple[list, str, float]:
    """(frames at `steps` — each the agent's view, beside the full render where the env re-creates the state — or
    each's results of them, the sentence saying what they show, the fps) of one episode's shaped observations.
    fit: a function resizing each composed frame (a video's width)."""
    shape = np.shape(observations)[1:]
    kind = obs_kind(shape)
    full, how = None, None
    if env_id and seed is not None:
        full, how = replay_renders(env_id, observations, actions, int(seed), steps, shape)
    if full is None:
        reason = (how if how else "the episode records no reset seed, and the agent's view does not hold the whole "
                  "state" if env_id else "it names no environment")
        why = (f"The agent's own view only ({'its 7x7 grid' if kind == 'grid' else 'the last 84x84 frame of its stack'}"
               f"): the full state cannot be re-created ({reason}).")
    else:
        why = (f"The agent's own view (left: {'its grid' if kind == 'grid' else 'the last frame of its 4x84x84 stack'}"
               f", enlarged) beside {env_id}'s full render (right), {how}.")
    out = []
    for i, t in enumerate(steps):
        right = None if full is None else full[i]
        left = view(observations[int(t)], height or (right.shape[0] if right is not None else None))
        img = beside(left, right)
        img = img if fit is None else fit(img)
        out.append(img if each is None else each(img))
    fps = 10.0 if kind == "grid" else 15.0   # MiniGrid's render_fps; Atari: the DT paper's 4-frame steps at 60 Hz
    return out, why, fps
