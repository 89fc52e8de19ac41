"""One writer per run folder (text_envs_app.run_lock): a second train, --resume or bench is refused while a run
writes the folder, a lock left by a process that no longer runs is taken over, another host's lock is refused."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from text_envs_app.cli import main
from text_envs_app.run_lock import RunLock, RunLockedError, lock_path

ROOT = Path(__file__).resolve().parents[1]
HOLD = ("import sys, time; from text_envs_app.run_lock import RunLock; "
        "lock = RunLock(sys.argv[1], 'text-envs train --out ' + sys.argv[1]).acquire(); "
        "print('locked', flush=True); time.sleep(120)")


@pytest.fixture
def held_by_another_process(tmp_path):
    """A run folder whose lock a live subprocess holds; yields (folder, process)."""
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert proc.stdout.readline().strip() == "locked"
        yield out, proc
    finally:
        proc.kill()
        proc.wait()


def dead_pid() -> int:
    """The id of a process that has just exited."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def write_lock(folder: Path, **fields) -> Path:
    path = lock_path(folder)
    info = {**RunLock(folder, "text-envs train --out x").info(), **fields}
    path.write_text(json.dumps(info))
    return path


def test_a_second_train_resume_or_bench_is_refused_naming_the_other_process(held_by_another_process, capsys):
    out, proc = held_by_another_process
    for argv in (["train", "--out", str(out), "--env", "TextCopy-v0", "--steps", "32"],
                 ["train", "--out", str(out), "--resume"],
                 ["bench", "--preset", "small", "--out", str(out)]):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert f"is being written by process {proc.pid} on {socket.gethostname()}" in err, err
        assert f"`text-envs train --out {out}`" in err and f"kill {proc.pid}" in err and "another --out" in err
    assert not out.exists()  # nothing was written by the refused commands
    assert json.loads(lock_path(out).read_text())["pid"] == proc.pid  # the owner's lock is untouched


def test_a_stale_lock_of_a_killed_run_is_taken_over_with_a_message(tmp_path, capsys, restore_torch_threads):
    out = tmp_path / "run"
    gone = dead_pid()
    write_lock(out, pid=gone)
    args = ["train", "--out", str(out), "--env", "TextCopy-v0", "--steps", "32", "--n-envs", "4", "--n-steps", "8",
            "--batch-size", "16", "--eval-examples", "4", "--curve-points", "0", "--threads", "1"]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert f"taking over the lock {lock_path(out)} left by process {gone}" in text and "which no longer runs" in text
    assert (out / "results.md").is_file()
    assert not lock_path(out).exists()  # released when the run ends


def test_a_lock_from_before_a_reboot_or_of_a_reused_pid_is_stale(tmp_path):
    messages: list[str] = []
    # pid 1 runs, but the lock says another boot: the machine rebooted since that run
    write_lock(tmp_path / "a", pid=1, boot_id="an-earlier-boot")
    with RunLock(tmp_path / "a", log=messages.append):
        assert json.loads(lock_path(tmp_path / "a").read_text())["pid"] == os.getpid()
    # this very process, but with another start time: a new program got the dead run's pid
    parent = os.getppid()
    write_lock(tmp_path / "b", pid=parent, start_tick=-5)
    with RunLock(tmp_path / "b", log=messages.append):
        pass
    assert len(messages) == 2 and all("which no longer runs" in m for m in messages)


def test_a_garbled_lock_is_taken_over_and_another_hosts_lock_is_refused(tmp_path):
    messages: list[str] = []
    lock_path(tmp_path / "a").write_text("{not json")
    with RunLock(tmp_path / "a", log=messages.append):
        pass
    assert "that does not read as a lock" in messages[0]
    path = write_lock(tmp_path / "b", host="elsewhere.example", pid=4242)
    with pytest.raises(RunLockedError, match=rf"another host, which cannot be checked from here: if that run is no "
                                             rf"longer going, delete {path}"):
        RunLock(tmp_path / "b").acquire()


def test_of_processes_racing_for_one_folder_exactly_one_wins(tmp_path):
    out = tmp_path / "run"
    go = tmp_path / "go"
    code = ("import os, sys, time; from text_envs_app.run_lock import RunLock, RunLockedError\n"
            "while not os.path.exists(sys.argv[2]):\n    time.sleep(0.005)\n"
            "try:\n    lock = RunLock(sys.argv[1]).acquire()\nexcept RunLockedError:\n    print('refused')\n"
            "else:\n    print('won', flush=True); time.sleep(2); lock.release()")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(out), str(go)], stdout=subprocess.PIPE, text=True,
                              cwd=ROOT) for _ in range(4)]
    time.sleep(1.5)  # all four imported and waiting
    go.touch()
    results = sorted(p.communicate(timeout=60)[0].strip() for p in procs)
    assert results == ["refused"] * 3 + ["won"], results
    assert not lock_path(out).exists()
