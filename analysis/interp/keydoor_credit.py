"""Key-to-Door credit: how much of a Decision Transformer's attribution falls on the key-pickup step, explained
at the first phase-3 step (or the episode's last), for each target (action, return, value) and for the
trained and a randomized model. The design note (docs/ARCHITECTURE.md): return-to-go = 1 in phase 3 already
tells the DT the key was taken, so its action needs no memory; memory shows in the return/value prediction.
The episode landmarks come from analysis/interp/attribution_markers.py (re-exported here)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis.interp.attribution import Attribution, attribute_steps
from analysis.interp.attribution_markers import KeyDoorSteps, is_key_to_door, key_door_steps  # noqa: F401 - Key-to-Door names in one place
from analysis.core.inputs import training_data


def _span_fraction(res: Attribution, first: int, stop: int | None, randomized: bool) -> float:
    """Fraction of the context's |attribution| (the explained step left out) on episode steps first..stop-1
    (stop None: up to the explained step)."""
    m = res.randomized if randomized else res.trained
    per = np.abs(m.per_step()[res.mask])[:-1]
    steps = res.window_steps[res.mask][:-1]
    span = (steps >= first) & (steps < (res.step if stop is None else stop))
    return float(per[span].sum() / per.sum()) if per.sum() > 0 else float("nan")


def _span_share(res: Attribution, first: int, stop: int | None, randomized: bool) -> float:
    """Mean share over uniform of episode steps first..stop-1 (NaN when empty)."""
    if stop is None or first >= stop:
        return float("nan")
    return float(np.mean([res.share_over_uniform(s, randomized=randomized) for s in range(first, stop)]))


@dataclass
class KeyDoorCredit:
    """Credit on the key-pickup step, at one explained step per episode, for the trained and randomized model."""

    target: str
    method: str
    episodes: np.ndarray           # [E]
    key_step: np.ndarray           # [E]
    explained_step: np.ndarray     # [E]
    share: np.ndarray              # [E] share of |attribution| on the key step over uniform (trained)
    randomized_share: np.ndarray   # [E] the same on the randomized model
    share_after: np.ndarray        # [E] per-step share over uniform of the phase-1 steps after the pickup (key gone
                                   #     from the observation), NaN when the key was taken on phase 1's last step
    randomized_share_after: np.ndarray
    spearman: np.ndarray           # [E] rank correlation trained vs randomized maps
    delta: np.ndarray              # [E] IG convergence delta (NaN for other methods)
    span_share: np.ndarray | None = None             # [E] fraction of the context's |attribution| (current step left
                                                     #     out) on the key step through the end of phase 1
    randomized_span_share: np.ndarray | None = None  # [E] the same on the randomized model

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame({"episode": self.episodes, "key_step": self.key_step, "explained_step": self.explained_step,
                             "target": self.target, "method": self.method, "share_over_uniform": self.share,
                             "randomized_share_over_uniform": self.randomized_share, "share_after_key": self.share_after,
                             "randomized_share_after_key": self.randomized_share_after, "spearman": self.spearman,
                             "ig_delta": self.delta})


def key_door_credit(agent, dataset, episodes=None, target: str = "value", method: str = "ig", at: str = "phase3",
                    max_episodes: int = 32, batch: int = 16, **kwargs) -> KeyDoorCredit:
    """Share over uniform of |attribution| on the key step (context without the current step), explained
    at the first phase-3 step (`at="phase3"`) or the episode's last step (`at="last"`). Only episodes where
    the key was picked up and phase 3 was reached (within the agent's context of the key) are used."""
    if at not in ("phase3", "last"):
        raise ValueError(f"at must be 'phase3' or 'last', got '{at}'.")
    if not is_key_to_door(dataset):
        raise ValueError("key_door_credit needs a Key-to-Door dataset (9 features: agent, phase one-hot, key, door).")
    episodes = range(dataset.n_episodes) if episodes is None else episodes
    K = agent.context_length
    chosen = []
    for e in episodes:
        ep = dataset.episode(int(e))
        kd = key_door_steps(ep.observations, ep.actions)
        if kd.key_step is None or kd.phase3_step is None:
            continue
        explained = kd.phase3_step if at == "phase3" else len(ep) - 1
        if explained - kd.key_step >= K or explained <= kd.key_step:
            continue
        chosen.append((int(e), kd.key_step, explained, kd.phase2_step))
        if len(chosen) >= max_episodes:
            break
    if not chosen:
        raise ValueError("no episode picked up the key and reached phase 3 within the agent's context.")
    data = training_data(agent, dataset)
    res = []
    for i in range(0, len(chosen), batch):
        part = chosen[i:i + batch]
        res += attribute_steps(agent, dataset, [int(dataset.episode_starts[e]) + s for e, _, s, _ in part], target,
                               method, data=data, **kwargs)
    share = np.array([r.share_over_uniform(k) for r, (_, k, _, _) in zip(res, chosen)])
    rshare = np.array([r.share_over_uniform(k, randomized=True) if r.randomized else np.nan for r, (_, k, _, _) in zip(res, chosen)])
    after = np.array([_span_share(r, k + 1, p2, False) for r, (_, k, _, p2) in zip(res, chosen)])
    rafter = np.array([_span_share(r, k + 1, p2, True) if r.randomized else np.nan for r, (_, k, _, p2) in zip(res, chosen)])
    return KeyDoorCredit(target, method, np.array([c[0] for c in chosen]), np.array([c[1] for c in chosen]),
                         np.array([c[2] for c in chosen]), share, rshare, after, rafter, np.array([r.spearman for r in res]),
                         np.array([np.nan if r.trained.delta is None else r.trained.delta for r in res]),
                         np.array([_span_fraction(r, k, p2, False) for r, (_, k, _, p2) in zip(res, chosen)]),
                         np.array([_span_fraction(r, k, p2, True) if r.randomized else np.nan
                                   for r, (_, k, _, p2) in zip(res, chosen)]))


# ---- what the credit and the patching say together (the Credit page's sentence) ----------------------------------
SPAN = "the key-pickup step through the end of phase 1"


def key_span_patching(agent, dataset, output: str = "value", max_pairs: int = 32) -> tuple[np.ndarray, int]:
    """[pairs, 4] readings of `output` (value: return predicted with the return-to-go hidden, raw units; action: the
    logit of the clean episode's logged action) at the first phase-3 step: clean (key taken), corrupted (an episode
    without the key whose phases start at the same steps), corrupted with the post-pickup span (SPAN: R, s and a
    tokens) patched from clean, and corrupted with the distractor steps (phase 2) patched; the patch replaces the input
    embedding (blocks.0.resid_pre). And how many pairs were left out because clean and corrupted read the same.
    analysis/research/reproduce.py's key_door_patching is this for the value."""
    import torch

    from analysis.interp.patching import Patcher, make_pair, readout

    acts = np.asarray(dataset.actions)
    marks = [key_door_steps(dataset.observations[s:t], acts[s:t])
             for s, t in zip(dataset.episode_starts, dataset.episode_ends)]
    without: dict[tuple, list[int]] = {}
    for e, m in enumerate(marks):
        if not m.has_key and m.phase3_step is not None and m.phase2_step is not None:
            without.setdefault((m.phase2_step, m.phase3_step), []).append(e)
    data = training_data(agent, dataset)
    readout(agent, output)   # no such head: its sentence before any pair is made
    rows, skipped = [], 0
    for e, m in enumerate(marks):
        if len(rows) >= max_pairs:
            break
        others = without.get((m.phase2_step, m.phase3_step)) if m.has_key and m.phase3_step is not None else None
        if not others:
            continue
        c = others[(len(rows) + skipped) % len(others)]
        step = m.phase3_step
        pair = make_pair(agent, dataset, episode=e, corrupt="key", corrupt_episode=c, step=step, data=data)
        out = readout(agent, output, int(pair.logged_action) if output == "action" and agent.discrete else None)
        try:
            p = Patcher(agent, pair, out)
        except ValueError:       # the same reading with and without the key: nothing to restore
            skipped += 1
            continue
        L, first = pair.steps, step - pair.steps + 1
        masks = torch.zeros((2, p.tokens(L)), dtype=torch.bool)
        for row, (a, b) in enumerate(((m.key_step, m.phase2_step), (m.phase2_step, step))):
            for t in range(max(a, first), b):
                masks[row, 3 * (t - first):3 * (t - first) + 3] = True
        span, distractor = p.patched({"blocks.0.resid_pre": masks})
        rows.append([p.clean, p.corrupted, span, distractor])
    return np.array(rows, float).reshape(-1, 4), skipped


def restored(p: np.ndarray, col: int = 2) -> float:
    """sum over pairs of (patched - corrupted) / sum of (clean - corrupted): the share of the difference restored."""
    gap = float(np.sum(p[:, 0] - p[:, 1]))
    return float(np.sum(p[:, col] - p[:, 1])) / gap if gap else float("nan")


@dataclass
class KeyDoorVerdict:
    """Credit on the key step (action vs value, paired over episodes) beside the patching of the post-pickup span
    (value vs action), each with its 95% CI, and the sentences the numbers choose."""

    method: str
    credit: dict             # "action" / "value" -> {"mean", "ci_low", "ci_high", "n"}: share over uniform
    credit_diff: dict        # action - value, paired by episode: {"mean", "ci_low", "ci_high", "n"}
    patching: dict           # "value" / "action" -> {"estimate", "ci_low", "ci_high", "pairs"} (empty: not run)
    credit_favours: str      # "action" | "value" | "neither": the paired CI excludes 0, or not
    patching_favours: str    # "value" | "action" | "neither": the one output whose patch restores at least CARRIES of
                             # its difference (CI's lower end), or none / both
    sentences: list[str]


CARRIES = 0.5   # a patch that restores at least half of an output's difference (CI's lower end) carries it


def _carries(p: dict) -> str:
    """"carries" (the CI's lower end restores at least CARRIES), "not" (its upper end less) or "unclear"."""
    return "carries" if p["ci_low"] >= CARRIES else "not" if p["ci_high"] < CARRIES else "unclear"


def _ci(d: dict, pct: bool = False) -> str:
    f = (lambda v: f"{v:.0%}") if pct else (lambda v: f"{v:.2f}")
    return f"95% CI {f(d['ci_low'])} to {f(d['ci_high'])}"


def key_door_verdict(frame: pd.DataFrame, patching: dict[str, np.ndarray], method: str = "integrated gradients",
                     seed: int = 0) -> KeyDoorVerdict:
    """frame: the credit per episode and target (KeyDoorCredit.to_frame() rows of "action" and "value"); patching:
    output -> key_span_patching's [pairs, 4]. The sentences say what the numbers show, whichever way they fall."""
    from analysis.core.stats import mean_ci, paired_difference_ci, stratified_bootstrap_ci

    share = {t: frame[frame["target"] == t].set_index("episode")["share_over_uniform"].astype(float)
             for t in ("action", "value")}
    credit = {t: mean_ci(s.to_numpy(), seed) for t, s in share.items()}
    both = share["action"].index.intersection(share["value"].index)
    a, v = share["action"].loc[both].to_numpy(), share["value"].loc[both].to_numpy()
    ok = np.isfinite(a) & np.isfinite(v)
    diff = paired_difference_ci(a[ok], v[ok], seed=seed)
    credit_favours = "action" if diff["ci_low"] > 0 else "value" if diff["ci_high"] < 0 else "neither"
    patched = {}
    for out, p in patching.items():
        if len(p):
            lo, hi = stratified_bootstrap_ci([p], {"r": restored}, seed=seed)["r"]
            patched[out] = {"estimate": restored(p), "ci_low": lo, "ci_high": hi, "pairs": int(len(p))}
    status = {o: _carries(p) for o, p in patched.items()}
    carry = [o for o in ("value", "action") if status.get(o) == "carries"]
    patching_favours = carry[0] if len(carry) == 1 and len(status) == 2 else "neither"
    ca, cv = credit["action"], credit["value"]
    said = {"action": "the action gets more credit on the key step than the value",
            "value": "the value gets more credit on the key step than the action",
            "neither": "the action's and the value's credit on the key step cannot be told apart "
                       f"(paired difference {diff['mean']:+.2f}, {_ci(diff)}, spans 0)"}[credit_favours]
    out = [f"Measured: {method} puts {ca['mean']:.2f}× a uniform share on the key step for the action ({_ci(ca)}) "
           f"and {cv['mean']:.2f}× for the value ({_ci(cv)}), over {diff['n']} episodes: {said}."]
    if patched:
        parts = [f"{patched[o]['estimate']:.0%} of the {'value' if o == 'value' else 'action logit'}'s difference "
                 f"({_ci(patched[o], pct=True)}, {patched[o]['pairs']} pairs)" for o in ("value", "action") if o in patched]
        out.append(f"Patching {SPAN} from key-taken into no-key episodes restores " + " and ".join(parts) + ".")
    if credit_favours != "neither" and patching_favours != "neither":
        if credit_favours == patching_favours == "value":
            out.append("Both say the value carries the memory of the key, as the design expects.")
        elif credit_favours == patching_favours == "action":
            out.append("Both say the action leans on the key step more than the value: not what the design expects.")
        else:
            out.append(f"Attribution and patching disagree: attribution credits the {credit_favours} more, patching "
                       f"finds the {patching_favours} depends on the key step more. Patching is the causal test (what "
                       "changes the output); attribution is a local sensitivity and can credit a token the output "
                       "does not depend on.")
    elif patching_favours != "neither":
        other = "action" if patching_favours == "value" else "value"
        said = f"Patching, the causal test, finds that the {patching_favours} depends on the key step and the " + (
            f"{other} does not" if status[other] == "not" else f"{other} is not shown to") + (
            ", as the design expects" if patching_favours == "value" else ", not what the design expects")
        lean = "action" if diff["mean"] > 0 else "value"
        if lean != patching_favours:
            said += (f". Attribution's estimates lean the other way ({lean} {credit[lean]['mean']:.2f}× against "
                     f"{credit[patching_favours]['mean']:.2f}×) without separating the two, so on their face the two "
                     "methods disagree; the patching is the firmer result.")
        else:
            said += "; attribution points the same way without separating the two."
        out.append(said)
    elif credit_favours != "neither":
        out.append(f"Attribution credits the {credit_favours} more, but patching does not separate the two outputs, "
                   "so this is not evidence of which one remembers.")
    else:
        out.append("Neither attribution nor patching separates the two outputs at this number of episodes.")
    return KeyDoorVerdict(method, credit, diff, patched, credit_favours, patching_favours, out)
