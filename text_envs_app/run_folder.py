"""A run's output folder (``--out``): made, emptied or checked for ``--resume`` (:func:`prepare_out`), the engine a
resumed run continues on (:func:`run_engine`), and the messages a run prints when it is stopped (:class:`RunFolder`).
Both engines' runs (:mod:`text_envs_app.train`, :mod:`text_envs_app.rllib_train`) and ``text-envs bench`` and
``eval --out`` use it."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from text_envs.errors import TextEnvsError


def prepare_out(cfg: Any) -> Path:
    """The output folder of ``cfg`` (a :class:`~text_envs_app.config.TrainConfig`): made (emptied with
    ``overwrite``) for a new run, or checked for ``resume``."""
    out = Path(cfg.out)
    if cfg.resume:
        if not out.is_dir():
            raise TextEnvsError(f"--resume: output folder {str(out)!r} does not exist, so there is no run to "
                                "resume: start one without --resume.")
        if not any(out.iterdir()):
            raise TextEnvsError(f"--resume: output folder {str(out)!r} is empty, so there is no run to resume: "
                                "start one there without --resume.")
        if not (out / "config.json").is_file():
            raise TextEnvsError(f"--resume: {str(out)!r} is not a `text-envs train` output folder (it has no "
                                "config.json): give the --out of the run to continue.")
        if (out / "results.json").is_file() and not (out / "checkpoints").is_dir():
            raise TextEnvsError(f"--resume: the run in {str(out)!r} is finished (it has results.json), so there is "
                                "nothing to resume: use --overwrite to run it again, or another --out.")
        return out
    if out.exists() and any(out.iterdir()):
        if not cfg.overwrite:
            raise TextEnvsError(
                f"Output folder {str(out)!r} exists and is not empty: choose another --out, pass --resume to "
                "continue its run, or --overwrite to replace it."
            )
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    return out


def empty_folder(out: Path, remove: bool) -> None:
    """Delete what a run wrote in ``out`` (and ``out`` itself when ``remove``)."""
    if remove:
        shutil.rmtree(out, ignore_errors=True)
        return
    for child in out.iterdir():
        if child.is_dir():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)


def run_engine(cfg: Any) -> str:
    """The engine a run trains on: ``cfg.engine``, or with ``--resume`` the engine of the run in ``cfg.out`` (its
    config.json), since a resumed run continues on its own engine."""
    config = Path(cfg.out) / "config.json"
    if cfg.resume and config.is_file():
        return json.loads(config.read_text()).get("engine", "sb3")
    return cfg.engine


class RunFolder:
    """The output folder of one ``text-envs train`` run, and the messages that tell the user what is in it when the
    run stops early. Made without touching the disk beyond noting whether the folder already exists (so that a run
    stopped before training removes a folder it made, and only empties one it was given)."""

    def __init__(self, out: str | os.PathLike) -> None:
        self.path = Path(out)
        self.existed = self.path.exists()
        self.resume_hint = f"text-envs train --out {out} --resume"
        """the command that continues the run"""

    @property
    def state_path(self) -> Path:
        """``state.json``: the config and the start model's table, written once the first evaluation is done."""
        return self.path / "state.json"

    def prepare(self, cfg: Any) -> Path:
        """:func:`prepare_out` of ``cfg``: the folder made (or emptied with ``overwrite``), or checked for ``resume``."""
        return prepare_out(cfg)

    def saved_config(self) -> dict[str, Any]:
        """The run's config.json values (for ``--resume``)."""
        return json.loads((self.path / "config.json").read_text())

    def start_over(self, log: Any) -> None:
        """A ``--resume`` of a run stopped before its first checkpoint: say so and empty the folder."""
        log(f"--resume: {self.path} has no checkpoint yet (the run stopped before training began): starting it over "
            "with its saved settings")
        empty_folder(self.path, remove=False)

    def stopped_while_resuming(self, signal: str) -> str:
        """The message of a Ctrl-C/SIGTERM while a run resumes (its checkpoints untouched)."""
        return f"\n{signal}: stopped while resuming; the checkpoints are unchanged; continue with: {self.resume_hint}"

    def abandon(self, signal: str) -> str:
        """A Ctrl-C/SIGTERM before training began: remove what the run wrote (the folder too when the run made it),
        so that neither a re-run nor ``--resume`` finds a half-made folder; returns the message."""
        empty_folder(self.path, remove=not self.existed)
        return (f"\n{signal}: stopped before training began: nothing saved "
                f"({'removed' if not self.existed else 'emptied'} {self.path}); run the same command to start again")

    def stopped_in_final_evaluation(self, signal: str, saved_in: Any) -> str:
        """The message of a Ctrl-C/SIGTERM after training, while the trained model is evaluated (``saved_in``: the
        checkpoint that holds the trained model)."""
        return (f"\n{signal} during the final evaluation: training is complete and saved in {saved_in}; run "
                f"{self.resume_hint} to evaluate it and write the results")

    def write_failed(self, error: OSError, what: Any, saved_in: Any) -> TextEnvsError:
        """The error of a full disk or a read-only folder while writing ``what`` after training."""
        why = "the disk is full" if error.errno == errno.ENOSPC else error
        return TextEnvsError(f"could not write {what} ({why}): training is complete and saved in {saved_in}; free "
                             f"space, then run {self.resume_hint} to evaluate it and write "
                             f"{'them' if str(what).startswith('the results') else 'the results'}")


def fsync_dir(path: Path) -> None:
    """Flush a folder's entries to disk (a rename is durable only once its folder is), where the OS allows it."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write(path: Path, write: Callable[[Any], None]) -> None:
    """Write ``path`` through ``write(file)`` into ``path.tmp``, flush it to disk, then rename it over ``path``:
    a ``kill -9`` at any moment leaves either the old file or the new one, never half of one."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    fsync_dir(path.parent)
