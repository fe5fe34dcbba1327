"""(agent, seed) training pieces for `cli.py reproduce --retrain`: each piece trains one recipe of
models/recipes.py with one seed and one torch thread, and its checkpoint lands in
`<out>/agents/<agent>/seed<k>/` (config.json + model.safetensors), its log in `<out>/logs/<agent>-seed<k>.log`.

Pieces run in this process one after another, or as Ray tasks (`use_ray=True`): a local Ray on this machine's
cores, or the cluster at `ray_address`. Ray is the engine (its scheduler, its retries on a lost node); this
module only submits one task per piece, waits on them with `ray.wait` (a tqdm bar over finished pieces) and
saves what each returns. A task returns its checkpoint's bytes and its log's text, so the pieces land on the
driver's disk whether or not the workers share it; on a cluster the code travels as a Ray runtime_env
working_dir (this repository, without .git, .venv, reports and shipped agents), while each node needs the same
Python packages (requirements.txt) in the Python that ran `ray start`.

Ray is imported only when `use_ray` is set. Training is deterministic by seed with one thread: the same piece
gives the same weights in a Ray worker and in this process (tests/test_seed_runs.py).
"""
from __future__ import annotations

import io
import os
import re
import shutil
import socket
import sys
import tempfile
import time
import traceback
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

from models.shipped import AGENT_DIR

ROOT = Path(__file__).resolve().parents[2]
CHECKPOINT_FILES = ("config.json", "model.safetensors")
# What a cluster's workers do not need of the repository (gitignore syntax, relative to ROOT): Ray uploads the
# rest as the runtime_env working_dir (the sample datasets, ~5 MB, and the code).
RUNTIME_EXCLUDES = [".git", ".venv", "**/__pycache__", ".pytest_cache", ".hypothesis", ".numba_cache", "report",
                    "test-artifacts", "bench/results", "docs", AGENT_DIR.relative_to(ROOT).as_posix(), "tests", "*.log",
                    "*.safetensors"]   # checkpoints: workers train from the datasets
LOG_UPDATE_S = 5.0   # a training bar's line in a log: at most one every LOG_UPDATE_S seconds


class SeedRunError(ValueError):
    """A problem with the pieces asked for, or a piece that failed: one sentence (cli.py: exit code 2)."""


Piece = tuple[str, int]


def checkpoint_dir(out_dir, name: str, seed: int) -> Path:
    return Path(out_dir) / "agents" / name / f"seed{seed}"


def log_path(out_dir, name: str, seed: int) -> Path:
    return Path(out_dir) / "logs" / f"{name}-seed{seed}.log"


def recipe_names() -> list[str]:
    from models import recipes

    return list(recipes.all_recipes())


def scaled_steps(steps: int, steps_scale: float = 1.0) -> int:
    """A recipe's training steps times steps_scale, at least 1 (tests cut recipes to a few steps)."""
    return max(1, int(round(steps * steps_scale)))


def train_recipe(name: str, seed: int, progress: bool = True, ds=None, steps_scale: float = 1.0):
    """One recipe of models/recipes.py trained with `seed` (steps times steps_scale): `make sample-agents`
    (through cli._train_recipe) and every piece train through here."""
    from models import recipes
    from models.train import train

    r = recipes.all_recipes()[name]
    if r.get("online"):   # issue 24: an agent that learns by acting (DQN) has no dataset
        from models.online_train import train_online

        return train_online(r["kind"], r["env"], steps=scaled_steps(r["steps"], steps_scale), seed=seed,
                            hparams=r.get("hparams"), batch_size=r.get("batch_size"), lr=r.get("lr"),
                            reward_scale=r.get("reward_scale", 1.0), progress=progress)
    ds = recipes.training_data(r, ds if ds is not None else recipes.recipe_data(r["data"]))
    if r.get("until"):   # trained in chunks until it is as good as its reference (analysis/research/train_until.py)
        from analysis.research.train_until import train_until

        ref = train_recipe(r["until"]["reference"], seed, progress=False, ds=ds, steps_scale=steps_scale)
        return train_until(r, seed, ds, ref, scaled_steps(r["steps"], steps_scale),
                           scaled_steps(r["until"]["chunk"], steps_scale), progress, f"{r['data']}.npz")
    return train(r["kind"], ds, steps=scaled_steps(r["steps"], steps_scale), seed=seed, context_length=r.get("context"),
                 batch_size=r.get("batch_size"), lr=r.get("lr"), hparams=r.get("hparams"),
                 progress=progress, dataset_name=f"{r['data']}.npz")


# ---- one piece (a Ray task's body, or run in this process) -----------------------------------------------------
class _LogStream(io.TextIOBase):
    """What a piece prints, to its log (and a copy of it): tqdm's carriage-return redraws become one line every
    LOG_UPDATE_S seconds (the last one is always kept), so `tail -f` on a log shows the training bar move."""

    def __init__(self, sinks):
        self.sinks = sinks
        self._pending, self._last, self._bar_last = None, 0.0, False

    def writable(self):
        return True

    def _emit(self, text: str):
        for s in self.sinks:
            s.write(text)
            s.flush()

    def write(self, s: str) -> int:
        if s.startswith("\r") and "\n" not in s:   # a bar redraw
            line = s.strip("\r").rstrip()
            now = time.monotonic()
            if now - self._last < LOG_UPDATE_S:
                self._pending = line
                return len(s)
            self._last, self._pending = now, None
            if line:
                self._emit(line + "\n")
                self._bar_last = True
            return len(s)
        after_bar = self._flush_bar()
        if not (after_bar and s == "\n"):   # tqdm's newline on close: the bar's line already ended
            self._emit(s)
        return len(s)

    def flush(self):
        pass

    def _flush_bar(self) -> bool:
        """Write the bar's last state (held back by the throttle); True if the last thing written was a bar line."""
        if self._pending is not None:
            if self._pending:
                self._emit(self._pending + "\n")
            self._pending = None
            self._bar_last = True
        was, self._bar_last = self._bar_last, False
        return was

    def close_bar(self):
        self._flush_bar()


def run_piece(name: str, seed: int, steps_scale: float = 1.0, live_log: str | None = None) -> dict:
    """Train one piece with one torch thread: {"name", "seed", "files": {file name: bytes} (None if it failed),
    "log": text, "seconds", "error": one line or None}. Everything it prints goes to the log (also to
    `live_log` as it happens, where given). Never raises for a failed
    training: the error is in the result and the traceback in the log."""
    import torch

    buf = io.StringIO()
    live = None
    if live_log:
        Path(live_log).parent.mkdir(parents=True, exist_ok=True)
        live = open(live_log, "w", encoding="utf-8")
    stream = _LogStream([buf] + ([live] if live else []))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    files, error = None, None
    try:
        with redirect_stdout(stream), redirect_stderr(stream):
            from models import recipes, save_agent

            r = recipes.all_recipes()[name]
            steps = scaled_steps(r["steps"], steps_scale)
            cut = f" (the recipe's {r['steps']} x steps_scale {steps_scale:g})" if steps_scale != 1 else ""
            print(f"seqlens: training {name} with seed {seed}: {r['kind']} on {r['data'] or 'its own acting in ' + r['env']}, {steps} steps{cut}, "
                  f"1 torch thread, host {socket.gethostname()}, pid {os.getpid()}, nice {os.nice(0)}", flush=True)
            try:
                agent = train_recipe(name, seed, progress=True, steps_scale=steps_scale)
                with tempfile.TemporaryDirectory() as tmp:
                    save_agent(agent, tmp)
                    files = {f: (Path(tmp) / f).read_bytes() for f in CHECKPOINT_FILES}
                stream.close_bar()
                print(f"seqlens: {name} seed {seed} trained in {time.perf_counter() - t0:.1f} s "
                      f"(final loss {agent.config.training['final_loss']:.4f}); checkpoint "
                      f"{sum(len(b) for b in files.values()):,} bytes", flush=True)
            except Exception as e:   # the log keeps the traceback, the result one line
                stream.close_bar()
                traceback.print_exc()
                error = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}".rstrip(": ")
    finally:
        torch.set_num_threads(threads)
        if live:
            live.close()
    return {"name": name, "seed": seed, "files": files, "log": buf.getvalue(), "error": error,
            "seconds": round(time.perf_counter() - t0, 1)}


def save_piece(result: dict, out_dir) -> Path:
    """A piece's checkpoint bytes -> <out>/agents/<agent>/seed<k>/ (written beside, then moved into place, so a
    checkpoint directory is never half written)."""
    final = checkpoint_dir(out_dir, result["name"], result["seed"])
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}-", dir=final.parent))
    try:
        for fname, data in result["files"].items():
            if fname not in CHECKPOINT_FILES:
                raise SeedRunError(f"a piece returned an unexpected file '{fname}'.")
            (tmp / fname).write_bytes(data)
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final


# ---- many pieces -------------------------------------------------------------------------------------------
def check_pieces(pieces) -> list[Piece]:
    """(agent, seed) pairs, each a known recipe and a seed >= 0; duplicates dropped, order kept."""
    known = recipe_names()
    out = []
    for name, seed in pieces:
        if name not in known:
            raise SeedRunError(f"no recipe named '{name}'; the recipes (models/recipes.py) are {', '.join(known)}.")
        if int(seed) < 0:
            raise SeedRunError(f"seeds are integers >= 0, got {seed}.")
        if (name, int(seed)) not in out:
            out.append((name, int(seed)))
    return out


def train_pieces(pieces, out_dir, ray_address: str | None = None, use_ray: bool = False, steps_scale: float = 1.0,
                 progress: bool = True) -> dict[Piece, Path]:
    """Train every (agent, seed) piece; {(agent, seed): checkpoint directory under <out_dir>/agents/}.

    use_ray: one Ray task per piece (a local Ray on all cores, or the cluster at ray_address); else one after
    another in this process. Logs: <out_dir>/logs/<agent>-seed<k>.log (locally written as the piece runs; from a
    cluster, once it finishes). The pieces that succeed are saved even when others fail; then one SeedRunError
    names the failures and their logs."""
    pieces = check_pieces(pieces)
    if not steps_scale > 0:
        raise SeedRunError(f"steps_scale must be > 0, got {steps_scale}.")
    if ray_address is not None and not use_ray:
        raise SeedRunError("a Ray address needs use_ray=True.")
    out_dir = Path(out_dir).resolve()
    (out_dir / "logs").mkdir(parents=True, exist_ok=True)
    if not pieces:
        return {}
    started = _start_ray(out_dir, ray_address) if use_ray else False   # an unreachable cluster: one sentence first
    say = (lambda m: print(m, file=sys.stderr, flush=True)) if progress else (lambda m: None)
    where = ("Ray at " + ray_address) if ray_address else (f"a local Ray ({os.cpu_count()} cores)" if use_ray else "this process")
    say(f"training {len(pieces)} piece(s) ((agent, seed) pairs) in {where}; a log per piece in {out_dir / 'logs'}/, "
        f"checkpoints in {out_dir / 'agents'}/<agent>/seed<k>/")
    from tqdm import tqdm

    bar = tqdm(total=len(pieces), desc="pieces", unit="piece", file=sys.stderr, disable=not progress)
    saved, failed = {}, []

    def finish(result: dict, live: bool):
        name, seed = result["name"], result["seed"]
        if not live:
            log_path(out_dir, name, seed).write_text(result["log"], encoding="utf-8")
        if result["error"] is None:
            saved[(name, seed)] = save_piece(result, out_dir)
        else:
            failed.append((name, seed, result["error"]))
        bar.update(1)
        bar.set_postfix_str(f"last: {name} seed {seed} {'failed' if result['error'] else 'done'} in {result['seconds']:.0f} s")

    try:
        if use_ray:
            _train_with_ray(pieces, out_dir, ray_address, steps_scale, finish)
        else:
            for name, seed in pieces:
                bar.set_description(f"pieces (now {name} seed {seed})")
                finish(run_piece(name, seed, steps_scale, str(log_path(out_dir, name, seed))), live=True)
    finally:
        bar.close()
        if started:
            import ray

            ray.shutdown()
    if failed:
        raise SeedRunError(f"{len(failed)} of {len(pieces)} piece(s) failed: "
                           + "; ".join(f"{n} seed {s} ({e}, log {log_path(out_dir, n, s)})" for n, s, e in failed)
                           + f"; the {len(saved)} that trained are saved in {out_dir / 'agents'}.")
    return {p: saved[p] for p in pieces}


def _check_reachable(address: str, timeout: float = 5.0):
    """One sentence, at once, for an address nothing listens on (ray.init would retry for minutes)."""
    if address == "auto":
        return
    hostport = address.split("://", 1)[1] if "://" in address else address
    host, sep, port = hostport.rpartition(":")
    if not sep:
        host, port = hostport, "10001" if address.startswith("ray://") else "6379"
    try:
        port_n = int(port)
    except ValueError:
        raise SeedRunError(f"'{address}' is not a Ray address: expected HOST:PORT (e.g. 10.0.0.5:6379), "
                           "ray://HOST:10001 or auto.") from None
    try:
        socket.create_connection((host.strip("[]"), port_n), timeout=timeout).close()
    except OSError as e:
        raise SeedRunError(f"cannot reach a Ray cluster at {address} ({e.strerror or e}): start one there with "
                           "`ray start --head`, or give --ray without an address for a local Ray on this machine.") from None


def _start_ray(out_dir: Path, ray_address) -> bool:
    """ray.init for the pieces (unless the caller already did): True if started here (then shut down after)."""
    try:
        import ray  # only here: the rest of seqlens never needs it
    except ImportError:
        raise SeedRunError("--ray needs the ray package (requirements.txt): .venv/bin/pip install 'ray>=2.9'.") from None

    if ray_address:
        _check_reachable(ray_address)
    if ray.is_initialized():
        return False
    # address "local": a new Ray on this machine's cores, never a stale or foreign cluster ray.init() might find
    options = dict(address=ray_address or "local", include_dashboard=False, log_to_driver=False)
    if not ray_address:
        # a local Ray runs its workers at nice 15: anything else on the machine (a test run, a browser) then takes
        # the cores from the pieces (measured: 1.5 steps/s instead of 9). The pieces are the job here.
        os.environ.setdefault("RAY_worker_niceness", "0")
    if ray_address:   # the code travels to the cluster's workers; their Python packages must be there already
        excludes = list(RUNTIME_EXCLUDES)
        if out_dir.is_relative_to(ROOT):
            excludes.append("/" + out_dir.relative_to(ROOT).as_posix())
        options.update(runtime_env={"working_dir": str(ROOT), "excludes": excludes})
    try:
        ray.init(**options)
    except Exception as e:
        auth = (" (a cluster with token authentication, Ray's default from 2.61 on and for `ray start` clusters in some "
                "earlier releases, needs RAY_AUTH_MODE=token and its token, from `ray get-auth-token` on the head, in "
                "RAY_AUTH_TOKEN or ~/.ray/auth_token here)") if ray_address else ""
        raise SeedRunError(f"Ray did not start{' at ' + ray_address if ray_address else ''}: "
                           f"{str(e).splitlines()[0] if str(e) else type(e).__name__}{auth}.") from None
    return True


def longest_first(pieces) -> list[Piece]:
    """The pieces ordered by their recipe's training time as the shipped agent recorded it (longest first; unknown
    last, order kept among equals), so the last pieces of a run are short ones and no core idles at the end (in
    recipe order, seed runs here ended with one 6-minute TT on one core and the other core idle)."""
    import json

    def cost(piece):
        try:
            cfg = json.loads((AGENT_DIR / piece[0] / "config.json").read_text())
            return float(cfg["training"]["seconds"])
        except (OSError, ValueError, KeyError, TypeError):
            return 0.0
    return sorted(pieces, key=cost, reverse=True)


def _train_with_ray(pieces, out_dir: Path, ray_address, steps_scale, finish):
    import ray

    live = not ray_address   # a local Ray shares this disk: a piece writes its log as it runs
    task = ray.remote(num_cpus=1)(run_piece)
    if live:   # a local worker starts in the driver's directory: it imports seqlens from ROOT
        path = [str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
        task = task.options(runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join(path)}})
    refs = {}
    try:
        for name, seed in longest_first(pieces):
            ref = task.remote(name, seed, steps_scale, str(log_path(out_dir, name, seed)) if live else None)
            refs[ref] = (name, seed)
        pending = list(refs)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for ref in done:
                try:
                    result = ray.get(ref)
                except Exception as e:   # the worker died, the node was lost past Ray's retries, ...
                    name, seed = refs[ref]
                    msg = re.sub(r"\x1b\[[0-9;]*m", "", str(e)).strip().splitlines()
                    result = {"name": name, "seed": seed, "files": None, "seconds": 0.0,
                              "error": f"{type(e).__name__}: {msg[-1] if msg else ''}",
                              "log": "the Ray task failed before returning:\n" + "\n".join(msg) + "\n"}
                    if live and log_path(out_dir, name, seed).exists():
                        result["log"] = log_path(out_dir, name, seed).read_text(encoding="utf-8") + result["log"]
                    live_now = False
                else:
                    live_now = live
                finish(result, live_now)
    except BaseException:
        for ref in refs:
            try:
                ray.cancel(ref, force=True)
            except Exception:
                pass
        raise


# ---- where the findings' agents come from ----------------------------------------------------------------------
def findings_agents() -> list[str]:
    """The agents a seed run trains: every agent findings.toml's findings use (run_all loads them; the agents it
    only measures beside, reproduce.OPTIONAL, are left out)."""
    from analysis.research import reproduce
    return list(dict.fromkeys(a for f in reproduce.registry().findings for a in f.agents))


def saved_pieces(agents_dir, pieces) -> tuple[dict[Piece, Path], list[Piece]]:
    """Checkpoints saved earlier: DIR/<agent>/seed<k>/ (DIR may be a --out directory holding agents/).
    ({piece: path} for those present, [pieces missing])."""
    root = Path(agents_dir)
    if not root.is_dir():
        raise SeedRunError(f"{root} is not a directory (expected <out>/agents from an earlier --retrain run).")
    if (root / "agents").is_dir() and not any((root / n).is_dir() for n, _ in pieces):
        root = root / "agents"
    found, missing = {}, []
    for name, seed in pieces:
        d = root / name / f"seed{seed}"
        (found.__setitem__((name, seed), d) if all((d / f).is_file() for f in CHECKPOINT_FILES) else missing.append((name, seed)))
    return found, missing


def describe(pieces) -> str:
    """[(a, 0), (a, 1), (b, 0)] -> 'a seeds 0,1; b seed 0'."""
    by = {}
    for n, s in pieces:
        by.setdefault(n, []).append(s)
    return "; ".join(f"{n} seed{'s' if len(s) > 1 else ''} {','.join(map(str, sorted(s)))}" for n, s in by.items())


def agent_checkpoints(needed, seeds, out_dir, train: list[str] | None = None, from_agents=None,
                      use_ray: bool = False, ray_address: str | None = None, steps_scale: float = 1.0,
                      progress: bool = True) -> dict[Piece, Path]:
    """Every (agent, seed) the findings need (`needed` agents x `seeds`), as checkpoint directories: the agents in
    `train` are trained now (train_pieces into <out_dir>/agents/), the rest read from `from_agents` (saved earlier).
    Anything neither trains nor finds is one sentence, before any training starts (never a silent retrain)."""
    seeds = sorted(set(int(s) for s in seeds))
    train = list(train or [])
    check_pieces([(n, 0) for n in train])
    to_train = [(n, s) for n in train for s in seeds]
    rest = [(n, s) for n in needed for s in seeds if n not in train]
    found, missing = saved_pieces(from_agents, rest) if from_agents is not None and rest else ({}, rest)
    if missing:
        hint = (f"train them with `cli.py reproduce --retrain --train-only --agents {','.join(dict.fromkeys(n for n, _ in missing))} "
                f"--seed-list {','.join(map(str, sorted({s for _, s in missing})))} --out OUT`, then pass --from-agents OUT/agents")
        where = f"{from_agents} lacks" if from_agents is not None else "--agents leaves out and no --from-agents DIR gives"
        raise SeedRunError(f"the findings also need {describe(missing)}, which {where}: {hint}.")
    trained = train_pieces(to_train, out_dir, ray_address=ray_address, use_ray=use_ray, steps_scale=steps_scale,
                           progress=progress)
    return {**found, **trained}
