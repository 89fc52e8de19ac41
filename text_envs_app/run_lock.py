"""One writer per run folder: a lock file beside the folder while a run writes it.

``text-envs train`` (a new run or ``--resume``) and ``text-envs bench`` hold ``<out>.lock`` (beside the folder, so
that emptying, replacing or copying the folder never touches it) for as long as they write ``<out>``. The file is
JSON: the process id, the host, the start time, the command, and (on Linux) the boot id and the process's start
tick, so that a process id reused after a reboot or by another program is not mistaken for the owner.

A second writer is refused with a message naming the owner and what to do. A lock whose process no longer runs
(``kill -9``, a crash, a reboot) is stale: it is taken over, with a message. A lock from another host cannot be
checked from here: it is refused, and the message says how to remove it once that run is known to be gone.
Reading a run (``text-envs eval``) takes no lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import inspect
import json
import os
import socket
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from text_envs.errors import TextEnvsError

__all__ = ["RunLockedError", "RunLock", "lock_path", "run_lock", "holds_run_lock"]


class RunLockedError(TextEnvsError):
    """Another process is writing the run folder."""


def lock_path(folder: str | os.PathLike) -> Path:
    """The lock file of a run folder: ``<folder>.lock`` beside it (the folder's real path, links resolved)."""
    real = Path(folder).expanduser().resolve()
    return real.with_name(real.name + ".lock")


def _boot_id() -> str | None:
    with contextlib.suppress(OSError):
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    return None


def _start_tick(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (Linux ``/proc/<pid>/stat`` field 22), else None."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        return int(stat[stat.rindex(")") + 2:].split()[19])  # fields after "(comm)", counted from field 3
    return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


def owner_is_running(info: dict[str, Any]) -> bool | None:
    """Whether the process that wrote lock ``info`` still runs: True, False, or None when it cannot be told from
    here (another host)."""
    if info.get("host") != socket.gethostname():
        return None
    boot = _boot_id()
    if boot is not None and info.get("boot_id") not in (None, boot):
        return False  # the machine rebooted since
    pid = int(info.get("pid", -1))
    if pid <= 0 or not _alive(pid):
        return False
    tick = info.get("start_tick")
    return tick is None or _start_tick(pid) in (None, tick)  # another program now has that pid: gone


def _describe(info: dict[str, Any]) -> str:
    started = info.get("started", "?")
    return (f"process {info.get('pid', '?')} on {info.get('host', '?')} (`{info.get('command', '?')}`, started "
            f"{started})")


class RunLock:
    """The lock of one run folder; a context manager (:func:`run_lock`), or :meth:`acquire` / :meth:`release`.

    :param folder: the run folder (need not exist yet)
    :param command: what holds it, for the messages of others (e.g. ``"text-envs train --out runs/x"``)
    :param log: where the message about a stale lock taken over goes
    """

    def __init__(self, folder: str | os.PathLike, command: str = "", log: Callable[[str], Any] = print) -> None:
        self.folder, self.path, self.log = Path(folder), lock_path(folder), log
        self.command = command or " ".join(Path(sys.argv[0]).name.split() + sys.argv[1:])
        self.held = False

    def info(self) -> dict[str, Any]:
        """What this process writes in the lock file."""
        pid = os.getpid()
        return {"pid": pid, "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
                "command": self.command, "folder": str(self.folder), "boot_id": _boot_id(),
                "start_tick": _start_tick(pid)}

    @staticmethod
    def read(path: Path) -> dict[str, Any] | None:
        """The lock file's content; None when there is none; ``{}`` when it does not read as a lock."""
        try:
            text = path.read_text()
        except FileNotFoundError:
            return None
        except OSError:
            return {}
        try:
            info = json.loads(text)
        except ValueError:
            return {}
        return info if isinstance(info, dict) else {}

    def _try_create(self) -> bool:
        """Write the lock file whole or not at all: a private file, then a hard link to the lock's name (fails
        if the name exists, so exactly one of two processes wins)."""
        tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(self.info(), indent=1) + "\n")
        try:
            os.link(tmp, self.path)
            return True
        except FileExistsError:
            return False
        finally:
            tmp.unlink(missing_ok=True)

    @contextlib.contextmanager
    def _deciding(self) -> Iterator[None]:
        """One process at a time decides about a stale lock: an advisory lock on the folder holding the lock file
        (released by the kernel if this process dies)."""
        fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def acquire(self) -> RunLock:
        """Take the lock; :class:`RunLockedError` naming the owner when another process holds it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._deciding():
            if self._try_create():
                self.held = True
                return self
            info = self.read(self.path)
            running = owner_is_running(info) if info else False  # this very process too: a lock is not reentrant
            if running:
                raise RunLockedError(
                    f"{self.folder} is being written by {_describe(info)}: wait for it to finish, or stop it "
                    f"(Ctrl-C or `kill {info.get('pid')}`; a stopped `train` continues with --resume), or write to "
                    "another --out.")
            if running is None:
                raise RunLockedError(
                    f"{self.folder} is locked by {_describe(info)}, another host, which cannot be checked from "
                    f"here: if that run is no longer going, delete {self.path} and run this again; otherwise wait "
                    "for it, or write to another --out.")
            what = f"left by {_describe(info)}, which no longer runs" if info else "that does not read as a lock"
            self.log(f"note: taking over the lock {self.path} {what} (a killed or crashed run)")
            self.path.unlink(missing_ok=True)
            if not self._try_create():
                raise RunLockedError(f"{self.folder}: another process took the lock {self.path} at the same time; "
                                     "run this again once it is done")
            self.held = True
            return self

    def release(self) -> None:
        """Remove the lock file if this process holds it."""
        if not self.held:
            return
        self.held = False
        info = self.read(self.path)
        if info and info.get("pid") == os.getpid():
            self.path.unlink(missing_ok=True)

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()


@contextlib.contextmanager
def run_lock(folder: str | os.PathLike, command: str = "", log: Callable[[str], Any] = print) -> Iterator[RunLock]:
    """Hold the lock of run folder ``folder`` for the ``with`` block (see :class:`RunLock`)."""
    lock = RunLock(folder, command, log)
    with lock:
        yield lock


def holds_run_lock(command: str, folder_arg: str = "out") -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorate a function that writes the run folder named by its argument ``folder_arg`` so that it holds that
    folder's lock while it runs (messages go to its ``log`` argument when it has one)."""

    def decorate(function: Callable[..., Any]) -> Callable[..., Any]:
        signature = inspect.signature(function)

        @functools.wraps(function)
        def locked(*args: Any, **kwargs: Any) -> Any:
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            folder = bound.arguments[folder_arg]
            with run_lock(folder, f"{command} {folder}", bound.arguments.get("log", print)):
                return function(*args, **kwargs)

        return locked

    return decorate
