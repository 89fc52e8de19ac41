"""Checkpoints of a training run: periodic, atomic, verified, and exact to resume from.

A checkpoint is one file, ``<out>/checkpoints/tokens-<N>.ckpt`` (a zip archive), taken at a rollout boundary
(after an update, before the next rollout). It holds data only, never a pickle (:mod:`text_envs_app.state_codec`):
``state.json`` (the structure, numbers and strings), ``arrays.npz`` (NumPy arrays, read with
``allow_pickle=False``) and ``tensors.safetensors`` (every torch tensor), which together store:

the parameters
    the algorithm's state dicts (``model.get_parameters()``: the policy's weights and the optimizer's state). The
    frozen KL reference is left out when the policy rebuilds it from the start model's path
    (``LLMPolicy(save_reference=False)``). The algorithm itself is rebuilt from the run's ``config.json`` (as a new
    run builds it) and the parameters loaded into it: SB3's zip, whose ``data`` entries are pickles, is not used.
the state
    what the parameters do not hold, so that N tokens + resume + N tokens gives the same weights as 2N straight,
    gathered from each stateful piece through its ``get_state()`` (:class:`text_envs.state.Stateful`;
    :mod:`text_envs_app.run_state` lists the pieces): the Python, NumPy and torch (and CUDA) random states; each
    env's random generator, data-sampling position and in-progress episode, the ``Monitor`` counters, the
    per-prompt baselines' caches; the algorithm's step state (``_last_obs``: SB3 would reset the envs otherwise,
    ``num_timesteps``, the episode-info window, through :mod:`sb3_ext.state`, the one adapter of SB3's
    internals); the policy's KL coefficient and mask-sync counters; the rollout buffer's state carried between
    rollouts (the KL of episodes still open). Rebuilt, not stored: the envs' tokenized-prompt caches and the
    policy's decode caches (both are emptied at every update anyway, or are pure caches of deterministic
    tokenization).
``manifest.json``
    the format version, the token count and the SHA-256 of each member.

Checkpoints of format ``text-envs-checkpoint/1`` (a ``state.pkl`` pickle and SB3's zip) are refused, not read:
:class:`OldCheckpointError` says how to proceed.

Each file is written to ``*.tmp``, flushed to disk and renamed over (``os.replace``), so a ``kill -9`` at any
moment leaves the previous checkpoint whole; the last ``keep`` checkpoints are kept. A truncated or corrupt
checkpoint is reported by name, renamed ``*.corrupt`` and the previous one is used.

Interrupts: :func:`interrupt_guard` makes SIGTERM act as Ctrl-C. During a rollout an interrupt stops at once
(the weights have not changed since the rollout began, so the state captured then is saved with them: the
partial rollout is dropped, never half-counted); during an update it is deferred to the end of that update
(a second Ctrl-C stops at once and keeps the last checkpoint).
"""

from __future__ import annotations

import collections
import contextlib
import copy
import errno
import hashlib
import io
import json
import os
import re
import signal
import threading
import time
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from text_envs.errors import TextEnvsError
from text_envs.state import StateError
from text_envs_app import run_state
from text_envs_app.run_folder import atomic_write
from text_envs_app.run_state import FORMAT, capture_state
from text_envs_app.state_codec import StateCodecError, dumps, loads

__all__ = [
    "CheckpointError",
    "OldCheckpointError",
    "CheckpointStore",
    "Checkpoint",
    "CheckpointCallback",
    "capture_state",
    "restore_state",
    "save_model_file",
    "read_sb3_policy_weights",
    "interrupt_guard",
    "DEFAULT_CHECKPOINT_EVERY",
]

#: the formats before checkpoints became data only (their state is a pickle): refused
PICKLE_FORMATS = ("text-envs-checkpoint/1",)
#: the members of a checkpoint besides manifest.json (no other member is read)
MEMBERS = ("state.json", "arrays.npz", "tensors.safetensors")
DEFAULT_CHECKPOINT_EVERY = 4096
_NAME = re.compile(r"^tokens-(\d+)\.ckpt$")


class CheckpointError(TextEnvsError):
    """A checkpoint that cannot be written or read."""


class OldCheckpointError(CheckpointError):
    """A checkpoint of a format whose state is a pickle: refused, never unpickled (not a corrupt file)."""


# ---------------------------------------------------------------------------------------------- state
def restore_state(model: Any, state: dict[str, Any], log: Callable[[str], Any] = print) -> None:
    """:func:`text_envs_app.run_state.restore_state`, a state that does not fit the run's pieces reported as a
    :class:`CheckpointError`. Call it right before ``model.learn(..., reset_num_timesteps=False)``."""
    try:
        run_state.restore_state(model, state, log)
    except StateError as e:
        raise CheckpointError(f"the checkpoint's state does not fit this run: {e}") from e


# ---------------------------------------------------------------------------------------------- files
def _sb3_bytes(model: Any) -> bytes:
    from sb3_ext.state import ALGORITHM_STEP_ATTRIBUTES

    buf = io.BytesIO()
    model.save(buf, exclude=list(ALGORITHM_STEP_ATTRIBUTES))  # resume state (in the checkpoints), not settings
    return buf.getvalue()


def save_model_file(model: Any, path: str | os.PathLike) -> None:
    """The deliverable SB3 zip, written atomically: weights and settings, without the optimizer's moments (resume
    state, in the checkpoints), the step state or a frozen reference the policy rebuilds from its path.
    ``PPO.load(path)`` reads it as any SB3 zip (its optimizer starts fresh)."""
    optimizer = model.policy.optimizer
    moments = optimizer.state
    optimizer.state = collections.defaultdict(dict)  # an empty state: SB3's loader still finds an optimizer entry
    try:
        data = _sb3_bytes(model)
    finally:
        optimizer.state = moments
    atomic_write(Path(path), lambda f: f.write(data))


def read_sb3_policy_weights(path: str | os.PathLike) -> dict[str, Any]:
    """The policy's state dict from an SB3 zip, read as data: its ``policy.pth`` with ``torch.load(...,
    weights_only=True)`` (tensors and plain containers only). The zip's ``data`` entries, pickles that SB3's own
    ``load`` unpickles, are not read."""
    import torch as th

    try:
        with zipfile.ZipFile(path) as zf:
            data = zf.read("policy.pth")
        return th.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except KeyError as e:
        raise CheckpointError(f"{path} is not an SB3 model zip: it has no policy.pth") from e
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        raise CheckpointError(f"{path} does not read as an SB3 zip ({type(e).__name__}: {e})") from e
    except Exception as e:  # torch's UnpicklingError: something besides tensors and plain containers
        raise CheckpointError(f"{path}: its policy.pth holds more than weights, so it is not read "
                              f"({type(e).__name__}: {str(e).splitlines()[0][:200]})") from e


@dataclass
class Checkpoint:
    """A checkpoint read back: its file, token count, the algorithm's parameters (state dicts) and the captured
    state."""

    path: Path
    tokens: int
    parameters: dict[str, Any]
    state: dict[str, Any]

    def load_into(self, model: Any) -> Any:
        """Load the parameters into ``model``, an algorithm built as the run built it (from its config); call
        :func:`restore_state` with ``self.state`` before ``learn``. Returns ``model``."""
        try:
            model.set_parameters(self.parameters, exact_match=True, device=model.device)
        except TextEnvsError:
            raise  # says what to do already (e.g. the start model the KL reference is rebuilt from has moved)
        except (ValueError, RuntimeError, KeyError) as e:
            raise CheckpointError(
                f"checkpoint {self.path} does not fit the model its run's config.json builds ({type(e).__name__}: "
                f"{str(e).splitlines()[0][:300] if str(e) else ''}); resume with the run's own config.json"
            ) from e
        return model


class CheckpointStore:
    """The checkpoints of one run in a folder: atomic saves, the last ``keep`` kept, reads that fall back.

    :param folder: where ``tokens-<N>.ckpt`` files live (made on first save)
    :param keep: checkpoints kept (>= 1); older ones are deleted after a newer one is safely written
    :param resume_hint: the command that resumes the run, for messages
    """

    def __init__(self, folder: str | os.PathLike, keep: int = 2, resume_hint: str = "") -> None:
        if keep < 1:
            raise CheckpointError(f"keep must be at least 1, got {keep}")
        self.folder, self.keep, self.resume_hint = Path(folder), int(keep), resume_hint

    def files(self) -> list[tuple[int, Path]]:
        """(tokens, path) of the complete checkpoint files, newest first (``*.tmp`` and ``*.corrupt`` ignored)."""
        if not self.folder.is_dir():
            return []
        found = [(int(m.group(1)), p) for p in self.folder.iterdir() if (m := _NAME.match(p.name))]
        return sorted(found, reverse=True)

    def describe_latest(self) -> str:
        files = self.files()
        if not files:
            return "no checkpoint was written yet"
        return f"the last checkpoint, {files[0][1]} ({files[0][0]:,} tokens), is intact"

    def save(self, model: Any, state: dict[str, Any]) -> Path:
        """Write a checkpoint of ``model`` (its weights now) with ``state`` (from :func:`capture_state`)."""
        tokens = int(state["num_timesteps"])
        path = self.folder / f"tokens-{tokens:012d}.ckpt"
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            try:
                members = dumps({"parameters": model.get_parameters(), "state": state})
            except StateCodecError as e:
                raise CheckpointError(f"could not store the run's state as data: {e}") from e
            manifest = {"format": FORMAT, "tokens": tokens, "created": time.time(),
                        "sha256": {name: hashlib.sha256(data).hexdigest() for name, data in members.items()}}

            def write(f: Any) -> None:
                with zipfile.ZipFile(f, "w", zipfile.ZIP_STORED) as zf:
                    for name, data in members.items():
                        zf.writestr(name, data)
                    zf.writestr("manifest.json", json.dumps(manifest))

            atomic_write(path, write)
        except OSError as e:
            reason = "the disk is full" if e.errno == errno.ENOSPC else f"{type(e).__name__}: {e}"
            raise CheckpointError(
                f"could not write checkpoint {path} at {tokens:,} tokens ({reason}); {self.describe_latest()}. "
                + (f"Free space, then continue with: {self.resume_hint}" if self.resume_hint else "")
            ) from e
        for _, old in self.files()[self.keep:]:
            with contextlib.suppress(OSError):
                old.unlink()
        return path

    @staticmethod
    def read(path: Path) -> Checkpoint:
        """Read and verify one checkpoint file; :class:`CheckpointError` naming the file if it is not whole."""
        try:
            with zipfile.ZipFile(path) as zf:
                manifest = json.loads(zf.read("manifest.json"))
                if manifest.get("format") in PICKLE_FORMATS:
                    raise OldCheckpointError(
                        f"checkpoint {path} has format {manifest.get('format')!r}: its state is a Python pickle "
                        "(written by text-envs before checkpoints became data only), and reading a pickle can run "
                        "any code, so it is not read. If you wrote it yourself, finish the run with the text-envs "
                        "version that started it; otherwise start the run again (text-envs train --overwrite with "
                        "the same --out, or another --out).")
                if manifest.get("format") != FORMAT:
                    raise CheckpointError(
                        f"checkpoint {path} has format {manifest.get('format')!r}, expected {FORMAT!r}")
                unexpected = sorted(set(manifest["sha256"]) - set(MEMBERS))
                if unexpected:
                    raise CheckpointError(f"checkpoint {path} lists members {unexpected} that a checkpoint never "
                                          f"has (expected {list(MEMBERS)}); they are not read")
                members = {name: zf.read(name) for name in manifest["sha256"]}
            for name, data in members.items():
                if hashlib.sha256(data).hexdigest() != manifest["sha256"][name]:
                    raise CheckpointError(f"checkpoint {path}: member {name} does not match its SHA-256 (corrupt)")
            content = loads(members)
        except CheckpointError:
            raise
        except StateCodecError as e:
            raise CheckpointError(f"checkpoint {path} does not hold data a checkpoint holds ({e})") from e
        except (zipfile.BadZipFile, zlib.error, KeyError, ValueError, EOFError, OSError, AttributeError,
                IndexError) as e:
            raise CheckpointError(f"checkpoint {path} is truncated or corrupt ({type(e).__name__}: {e})") from e
        return Checkpoint(path=path, tokens=int(manifest["tokens"]), parameters=content["parameters"],
                          state=content["state"])

    def load_latest(self, log: Callable[[str], Any] = print) -> Checkpoint | None:
        """The newest checkpoint that reads whole; a bad one is reported, renamed ``*.corrupt``, and the previous
        one tried. None when there is no checkpoint; :class:`CheckpointError` when none of them reads."""
        files = self.files()
        errors = []
        for _, path in files:
            try:
                return self.read(path)
            except OldCheckpointError:
                raise  # not damaged: an older run's file, left as it is
            except CheckpointError as e:
                errors.append(str(e))
                bad = path.with_name(path.name + ".corrupt")
                with contextlib.suppress(OSError):
                    path.rename(bad)
                log(f"error: {e}; moved it to {bad.name} and falling back to the previous checkpoint")
        if errors:
            raise CheckpointError(f"no checkpoint in {self.folder} could be read: " + "; ".join(errors))
        return None

    def remove_all(self) -> None:
        """Delete the checkpoints, partial and corrupt ones too (the run is finished, its deliverables written)."""
        if not self.folder.is_dir():
            return
        for path in self.folder.iterdir():
            if _NAME.match(path.name.removesuffix(".tmp").removesuffix(".corrupt")):
                with contextlib.suppress(OSError):
                    path.unlink()
        with contextlib.suppress(OSError):
            self.folder.rmdir()


# ---------------------------------------------------------------------------------------------- callback
def _callback_base() -> type:
    from stable_baselines3.common.callbacks import BaseCallback

    return BaseCallback


class CheckpointCallback(_callback_base()):  # type: ignore[misc]
    """Checkpoints at rollout boundaries, every ``every`` tokens, and the interrupt bookkeeping.

    At each rollout start (after an update) it captures the state; when ``every`` more tokens have passed since
    the last checkpoint it writes one. An interrupt during a rollout saves the state captured at its start with
    the (unchanged) weights: :meth:`save_interrupted`.

    :param store: where checkpoints go
    :param every: tokens between checkpoints (at the first rollout boundary at or after each multiple); 0: none
        besides the ones the caller asks for
    :param log: where messages go
    :param extras: called at each capture; what it returns is stored as ``state["extra"]`` (e.g. the learning
        curve so far)
    """

    def __init__(self, store: CheckpointStore, every: int = DEFAULT_CHECKPOINT_EVERY, log: Callable[[str], Any] = print,
                 extras: Callable[[], dict[str, Any]] | None = None):
        super().__init__()
        if every < 0:
            raise CheckpointError(f"--checkpoint-every must be >= 0 tokens, got {every}")
        self.store, self.every, self.log, self.extras = store, int(every), log, extras
        self.snapshot: dict[str, Any] | None = None
        self.last_saved = -1
        self.in_update = False
        self.stop_requested: str | None = None

    def save_state(self, state: dict[str, Any]) -> Path:
        path = self.store.save(self.model, state)
        self.last_saved = int(state["num_timesteps"])
        return path

    def capture(self) -> dict[str, Any]:
        """:func:`capture_state` of the model now, with ``extras``."""
        state = capture_state(self.model)
        state["extra"] = copy.deepcopy(self.extras()) if self.extras is not None else {}
        return state

    def save_now(self, model: Any = None) -> Path:
        """A checkpoint of the model as it is now (call outside ``learn`` or between its rollouts)."""
        if model is not None:
            self.model = model
        return self.save_state(self.capture())

    def _on_rollout_start(self) -> None:
        # in_update stays True (interrupts deferred) until the new snapshot is whole: an older snapshot must
        # never be saved with the weights of the update that just ran
        self.snapshot = None
        snapshot = self.capture()
        self.snapshot, self.in_update = snapshot, False
        tokens = snapshot["num_timesteps"]
        if self.every > 0 and tokens // self.every > max(self.last_saved, 0) // self.every and tokens > self.last_saved:
            self.save_state(self.snapshot)
        if self.stop_requested:  # deferred from the update that just ended
            raise KeyboardInterrupt

    def _on_rollout_end(self) -> None:
        self.in_update = True  # until the next rollout starts: the weights are changing

    def _on_step(self) -> bool:
        return True

    def save_interrupted(self) -> Path | None:
        """After an interrupt: save the last rollout boundary's state if it is newer than the last checkpoint and
        the weights still match it (the interrupt came during a rollout). None if nothing newer could be saved."""
        if self.snapshot is None or self.in_update or self.snapshot["num_timesteps"] <= self.last_saved:
            return None
        return self.save_state(self.snapshot)


@contextlib.contextmanager
def interrupt_guard(callback: CheckpointCallback | None = None, log: Callable[[str], Any] = print) -> Iterator[dict]:
    """SIGINT and SIGTERM raise ``KeyboardInterrupt`` (SIGTERM behaves like Ctrl-C); during an update (``callback
    .in_update``) the first one is deferred to the update's end, a second one stops at once. Yields a dict whose
    ``"signal"`` names the signal received. No-op outside the main thread."""
    info: dict[str, Any] = {"signal": None}
    if threading.current_thread() is not threading.main_thread():
        yield info
        return

    def handler(signum: int, frame: Any) -> None:
        name = signal.Signals(signum).name
        first = info["signal"] is None
        info["signal"] = info["signal"] or name
        if callback is not None and callback.in_update and first and callback.model is not None:
            callback.stop_requested = name
            log(f"\n{name}: finishing this update, then saving a checkpoint (again to stop at once, keeping the "
                "last checkpoint)")
            return
        raise KeyboardInterrupt

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield info
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
