"""Two Ray nodes on this machine: a head and a worker started as separate ``ray start`` processes on loopback,
RLlib env runners placed on the worker node by a custom resource, a tiny model trained on TextCopy-v0 there.

This is the RLlib guide's "Running on a Ray cluster" recipe (docs/guides/rllib.md) with both nodes on one machine:
each node has its own temp dir (so neither Ray's ``ray_current_cluster`` file of /tmp/ray nor another test's local
Ray is touched) and its own ports, and the cluster its own token (``RAY_AUTH_MODE=token`` + ``RAY_AUTH_TOKEN``:
``ray start`` turns token authentication on by itself when ``~/.ray/auth_token`` exists, and a driver that names the
address must then hold the token too). The driver runs in its own interpreter with ``RAY_ADDRESS`` set, as a user's
script would; both nodes are stopped at the end, failure or not, by ending their process groups (``ray stop`` would
stop every Ray process of the machine, other people's too).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("ray.rllib")
# a Ray run that hangs (seen once: an IMPALA learner waiting on its aggregation event) fails the test after 10
# minutes instead of stalling the suite (pytest-timeout; the signal method interrupts the wait in the main thread)
# two Ray nodes and a driver take minutes: CI's second step (-m expensive), not the fast suite
pytestmark = [pytest.mark.timeout(600), pytest.mark.expensive]

WORKER_RESOURCE = "worker_node"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ray_cli() -> list[str]:
    """``ray`` of this interpreter's environment (the console script beside it, else ``python -m``)."""
    script = Path(sys.executable).with_name("ray")
    return [str(script)] if script.exists() else [sys.executable, "-m", "ray.scripts.scripts"]


class RayNode:
    """One ``ray start --block`` process in its own session (process group), so the node and every process it
    spawned (GCS, raylet, workers) can be ended together."""

    def __init__(self, name: str, args: list[str], folder: Path, env: dict[str, str]) -> None:
        self.name, self.log = name, folder / f"{name}.log"
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen([*_ray_cli(), "start", "--block", *args], stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True, env=env)

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(f"`ray start` of the {self.name} node exited with {self.proc.returncode}:\n"
                               + self.log.read_text()[-3000:])

    def stop(self) -> None:
        """SIGTERM to the whole group (ray start then shuts its node down), SIGKILL what is left after 5 s."""
        for sig, wait in ((signal.SIGTERM, 5), (signal.SIGKILL, 10)):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                return
            try:
                self.proc.wait(wait)
            except subprocess.TimeoutExpired:
                continue
            try:  # the leader is gone; its group may still hold children
                os.killpg(self.proc.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.5)


@pytest.fixture(scope="module")
def two_node_cluster() -> Iterator[dict]:
    """A head (1 CPU) and a worker node (2 CPUs and the custom resource ``worker_node``) on 127.0.0.1; yields
    ``{"address", "env", "head", "worker", "folder"}`` (``env``: the environment of a driver process, with
    ``RAY_ADDRESS`` and the cluster's token); both stopped at the end. Skips with the reason where Ray cannot
    start."""
    folder = Path(tempfile.mkdtemp(prefix="rc", dir="/tmp"))  # short: Ray's socket paths must fit 107 bytes
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "OMP_NUM_THREADS": "1", "RAY_AUTH_MODE": "token",
           "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    for key in ("RAY_ADDRESS", "RAY_AUTH_TOKEN_PATH"):
        env.pop(key, None)
    port = _free_port()
    address = f"127.0.0.1:{port}"
    common = ["--node-ip-address=127.0.0.1", "--object-store-memory=100000000", "--disable-usage-stats"]
    nodes: list[RayNode] = []
    try:
        head = RayNode("head", ["--head", f"--port={port}", "--num-cpus=1", "--include-dashboard=false",
                                f"--temp-dir={folder / 'h'}", f"--ray-client-server-port={_free_port()}",
                                f"--dashboard-agent-listen-port={_free_port()}", *common], folder, env)
        nodes.append(head)
        deadline = time.time() + 60
        while True:  # the head's GCS listens
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                try:
                    head.check_alive()
                except RuntimeError as e:
                    pytest.skip(f"Ray cannot start a head node here: {e}")
                if time.time() > deadline:
                    pytest.skip("Ray's head node did not listen within 60 s")
                time.sleep(0.3)
        worker = RayNode("worker", [f"--address={address}", "--num-cpus=2",
                                    f'--resources={{"{WORKER_RESOURCE}": 1}}', f"--temp-dir={folder / 'w'}",
                                    f"--dashboard-agent-listen-port={_free_port()}", *common], folder, env)
        nodes.append(worker)
        yield {"address": address, "env": {**env, "RAY_ADDRESS": address}, "head": head, "worker": worker,
               "folder": folder}
    finally:
        for node in reversed(nodes):
            node.stop()
        leftover = subprocess.run(["pgrep", "-f", str(folder)], capture_output=True, text=True).stdout.split()
        shutil.rmtree(folder, ignore_errors=True)
        assert not leftover, f"Ray processes of the test cluster still running: {leftover}"


DRIVER = r"""
import json, os, time

import ray

import rllib_ext

ray.init(logging_level="ERROR")  # RAY_ADDRESS names the cluster
deadline = time.time() + 60
while len([n for n in ray.nodes() if n["Alive"]]) < 2:  # the worker node joins
    assert time.time() < deadline, "the worker node did not join within 60 s"
    time.sleep(0.3)
nodes = [n for n in ray.nodes() if n["Alive"]]
config = rllib_ext.algorithm_config("TextCopy-v0", "ppo", num_env_runners=2, num_envs_per_env_runner=4,
                                    train_batch_size=64, seed=0)
# each env runner asks for a share of the worker node's custom resource: both can only run there
config = config.env_runners(custom_resources_per_env_runner={"worker_node": 0.5})
algo = config.build_algo()
results = [algo.train() for _ in range(2)]
where = algo.env_runner_group.foreach_env_runner(
    lambda runner: (ray.get_runtime_context().get_node_id(), os.getpid(), getattr(runner, "_weights_seq_no", None)),
    local_env_runner=False)
print("RESULT " + json.dumps({
    "worker_nodes": [n["NodeID"] for n in nodes if n["Resources"].get("worker_node")],
    "all_nodes": [n["NodeID"] for n in nodes],
    "driver_node": ray.get_runtime_context().get_node_id(),
    "runners": where,
    "sampled": [r["env_runners"]["num_env_steps_sampled_lifetime"] for r in results],
}))
algo.stop()
ray.shutdown()
"""


def test_env_runners_train_on_the_worker_node(two_node_cluster, tmp_path):
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    proc = subprocess.run([sys.executable, str(script)], env=two_node_cluster["env"], capture_output=True, text=True,
                          timeout=240, cwd=Path(__file__).resolve().parents[1])
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stderr[-4000:]
    got = json.loads(lines[-1][len("RESULT "):])
    assert len(got["all_nodes"]) == 2 and len(got["worker_nodes"]) == 1, got
    (worker,) = got["worker_nodes"]
    assert got["driver_node"] != worker  # the driver (and its local learner) runs on the head
    assert [node for node, _, _ in got["runners"]] == [worker, worker], got  # both env runners on the worker node
    assert len({pid for _, pid, _ in got["runners"]}) == 2  # two runner processes
    assert got["sampled"][0] >= 64 and got["sampled"][1] >= 2 * 64, got  # they sampled the two iterations' tokens
    # each runner holds weights the learner on the head produced: the broadcast reached the worker node
    assert all(seq is not None and seq >= 1 for _, _, seq in got["runners"]), got


def _readme_example() -> str:
    """The Python example of the RLlib guide (docs/guides/rllib.md includes this file)."""
    return (Path(__file__).resolve().parents[1] / "docs" / "examples" / "rllib_algorithm_config.py").read_text()


def test_the_readme_python_example_runs_on_the_cluster(two_node_cluster, tmp_path):
    code = _readme_example()
    assert "rllib_ext.algorithm_config(" in code and ".build_algo()" in code
    proc = subprocess.run([sys.executable, "-c", code], env=two_node_cluster["env"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-4000:]
    lines = [line for line in proc.stdout.splitlines() if " tokens: mean return " in line]
    assert len(lines) == 4, proc.stdout
    tokens = [int(line.split()[0]) for line in lines]
    assert tokens == sorted(tokens) and tokens[0] >= 256 and tokens[-1] >= 4 * 256, lines
    assert (tmp_path / "copy_ckpt" / "rllib_checkpoint.json").is_file()

    from transformers import AutoModelForSeq2SeqLM

    AutoModelForSeq2SeqLM.from_pretrained(tmp_path / "copy_lm")
