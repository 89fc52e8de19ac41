"""Run folders are data: `--resume` and `text-envs eval` never unpickle what a run folder holds, a crafted pickle is
refused and nothing of it runs, and a model that ships code is refused unless --trust-remote-code is given.

Every crafted payload below would create a marker file if it ran; each test checks the marker is absent."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import io
import json
import pickle
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest

from text_envs_app.checkpoint import CheckpointError, CheckpointStore, OldCheckpointError
from text_envs_app.cli import main
from text_envs_app.config import TrainConfig

TINY = dict(env="TextCopy-v0", steps=32, n_envs=4, n_steps=8, batch_size=16, n_epochs=1, eval_examples=4,
            curve_points=0, checkpoint_every=16, seed=1, threads=1)


class Payload:
    """Pickles to a call that creates ``marker``: unpickling it is running code."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def write_checkpoint(path: Path, fmt: str, members: dict[str, bytes], tokens: int = 16) -> None:
    """A checkpoint file whose manifest lists ``members`` with their true SHA-256 (so only its content is wrong)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    manifest = {"format": fmt, "tokens": tokens,
                "sha256": {name: hashlib.sha256(data).hexdigest() for name, data in members.items()}}
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
        zf.writestr("manifest.json", json.dumps(manifest))


def stopped_run(folder: Path) -> Path:
    """A run folder as a stopped `text-envs train` leaves it (config.json, state.json), without checkpoints."""
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(dataclasses.asdict(TrainConfig(**TINY, out=str(folder)))))
    (folder / "state.json").write_text("{}")
    return folder


def quiet(*_: object) -> None:
    pass


def test_an_old_pickle_checkpoint_is_refused_at_resume_and_its_payload_never_runs(tmp_path, capsys):
    marker = tmp_path / "ran"
    out = stopped_run(tmp_path / "run")
    ckpt = out / "checkpoints" / "tokens-000000000016.ckpt"
    write_checkpoint(ckpt, "text-envs-checkpoint/1", {"model.zip": b"PK", "state.pkl": pickle.dumps(Payload(marker))})
    assert main(["train", "--out", str(out), "--resume"]) == 2
    err = capsys.readouterr().err
    assert f"checkpoint {ckpt} has format 'text-envs-checkpoint/1': its state is a Python pickle" in err
    assert "it is not read" in err and "--overwrite" in err
    assert not marker.exists()
    assert ckpt.exists()  # not an error of the file: left as it is, not renamed *.corrupt


@pytest.mark.parametrize("how", ["object array", "extra member"])
def test_a_pickle_hidden_in_a_checkpoint_is_refused_and_never_runs(tmp_path, how):
    marker = tmp_path / "ran"
    store = CheckpointStore(tmp_path / "checkpoints")
    buf = io.BytesIO()
    if how == "object array":  # np.load would unpickle it with allow_pickle=True
        np.savez(buf, a0=np.array([Payload(marker)], dtype=object))
        members = {"state.json": b'{"$": "dict", "items": {"x": {"$": "ndarray", "key": "a0"}}}',
                   "arrays.npz": buf.getvalue()}
    else:
        np.savez(buf)
        members = {"state.json": b"{}", "arrays.npz": buf.getvalue(), "state.pkl": pickle.dumps(Payload(marker))}
    write_checkpoint(store.folder / "tokens-000000000016.ckpt", "text-envs-checkpoint/2", members)
    with pytest.raises(CheckpointError) as info:
        store.load_latest(log=quiet)
    message = str(info.value)
    if how == "object array":
        assert "does not hold data a checkpoint holds" in message and "allow_pickle=False" in message
    else:
        assert "lists members ['state.pkl'] that a checkpoint never has" in message and "they are not read" in message
    assert not marker.exists()


def test_old_format_is_not_mistaken_for_corruption(tmp_path):
    store = CheckpointStore(tmp_path)
    write_checkpoint(tmp_path / "tokens-000000000032.ckpt", "text-envs-checkpoint/1", {"state.pkl": b"x"})
    with pytest.raises(OldCheckpointError):
        store.load_latest(log=quiet)
    assert [t for t, _ in store.files()] == [32]


@pytest.fixture(scope="module")
def finished_run(train_finished_run) -> Path:
    return train_finished_run("safety", **TINY)


def _rewrite_zip(path: Path, replace: dict[str, bytes]) -> None:
    with zipfile.ZipFile(path) as zf:
        members = {name: zf.read(name) for name in zf.namelist()}
    members.update(replace)
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)


def test_eval_of_a_run_never_reads_the_pickles_in_its_sb3_zip(finished_run, tmp_path, capsys):
    marker = tmp_path / "ran"
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    with zipfile.ZipFile(run / "model.zip") as zf:
        data = json.loads(zf.read("data"))
    serialized = [k for k, v in data.items() if isinstance(v, dict) and ":serialized:" in v]
    assert {"policy_class", "observation_space", "lr_schedule"} <= set(serialized)  # SB3's load unpickles these
    payload = base64.b64encode(pickle.dumps(Payload(marker))).decode()
    for key in [*serialized, "policy_kwargs"]:  # every pickled entry (and one more) runs the payload if unpickled
        data[key] = {":type:": "<class 'dict'>", ":serialized:": payload}
    _rewrite_zip(run / "model.zip", {"data": json.dumps(data).encode()})
    assert main(["eval", str(run), "--examples", "4"]) == 0
    assert not marker.exists()
    table = capsys.readouterr().out
    assert main(["eval", str(finished_run), "--examples", "4"]) == 0
    assert capsys.readouterr().out.split("| metric")[1] == table.split("| metric")[1]  # the same weights loaded


def test_a_policy_pth_that_is_not_only_weights_is_refused(finished_run, tmp_path, capsys):
    marker = tmp_path / "ran"
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    _rewrite_zip(run / "model.zip", {"policy.pth": pickle.dumps({"w": Payload(marker)}, protocol=2)})
    assert main(["eval", str(run), "--examples", "4"]) == 2
    assert "its policy.pth holds more than weights, so it is not read" in capsys.readouterr().err
    assert not marker.exists()


def test_a_bare_sb3_zip_is_refused_with_what_to_do(finished_run, tmp_path, capsys):
    shutil.copy(finished_run / "model.zip", tmp_path / "model.zip")
    assert main(["eval", str(tmp_path / "model.zip"), "--env", "TextCopy-v0", "--examples", "4"]) == 2
    err = capsys.readouterr().err
    assert "without its run's config.json beside it" in err and "text-envs eval RUN/hf" in err


def test_the_inspection_example_lists_the_pickled_entries_without_running_them(finished_run, tmp_path):
    """docs/examples/inspect_sb3_zip.py (docs/guides/safety.md), as written, on a run's zip whose pickles would
    create a marker file."""
    import os
    import subprocess
    import sys

    marker = tmp_path / "ran"
    zip_path = tmp_path / "model.zip"
    shutil.copy(finished_run / "model.zip", zip_path)
    with zipfile.ZipFile(zip_path) as zf:
        data = json.loads(zf.read("data"))
    data["lr_schedule"][":serialized:"] = base64.b64encode(pickle.dumps(Payload(marker))).decode()
    _rewrite_zip(zip_path, {"data": json.dumps(data).encode()})
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, str(root / "docs" / "examples" / "inspect_sb3_zip.py"), str(zip_path)],
                          capture_output=True, text=True, cwd=tmp_path, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(root)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "pickled entries: {'policy_class':" in proc.stdout and "'lr_schedule'" in proc.stdout
    assert "entries in the policy's state dict" in proc.stdout and not marker.exists()


# ---------------------------------------------------------------------------------------------- remote code
CUSTOM_CONFIG = '''
from pathlib import Path
from transformers import T5Config

Path(__file__).with_name("CONFIG_CODE_RAN").touch()
Path({marker!r}).touch()


class CustomT5Config(T5Config):
    model_type = "custom-t5"
'''
CUSTOM_MODEL = '''
from transformers import T5ForConditionalGeneration

from .configuration_custom import CustomT5Config


class CustomT5(T5ForConditionalGeneration):
    config_class = CustomT5Config
'''


def custom_code_model(folder: Path, marker: Path) -> Path:
    """A tiny T5 saved as a model that needs its own code (config.json's auto_map), which creates ``marker``."""
    from lm_core.backends import load_model, tiny_t5_config

    load_model(tiny_t5_config(64)).save_pretrained(folder)
    config = json.loads((folder / "config.json").read_text())
    config.update(model_type="custom-t5", architectures=["CustomT5"],
                  auto_map={"AutoConfig": "configuration_custom.CustomT5Config",
                            "AutoModelForSeq2SeqLM": "modeling_custom.CustomT5"})
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "configuration_custom.py").write_text(CUSTOM_CONFIG.format(marker=str(marker)))
    (folder / "modeling_custom.py").write_text(CUSTOM_MODEL)
    return folder


def test_a_model_that_needs_remote_code_is_refused_naming_the_flag(tmp_path, capsys):
    from lm_core.backends import ModelLoadError, load_model

    marker = tmp_path / "ran"
    folder = custom_code_model(tmp_path / "custom", marker)
    with pytest.raises(ModelLoadError, match=r"ships its own Python code \(config.json's auto_map: .*"
                                             r"pass --trust-remote-code \(Python: trust_remote_code=True\)"):
        load_model(str(folder))
    assert main(["eval", str(folder), "--env", "TextCopy-v0", "--examples", "2"]) == 2
    assert "--trust-remote-code" in capsys.readouterr().err
    assert main(["train", "--out", str(tmp_path / "run"), "--model", str(folder), *_tiny_args()]) == 2
    assert "--trust-remote-code" in capsys.readouterr().err
    assert not marker.exists()
    # the opt-in is explicit, and it does run the model's code
    model = load_model(str(folder), trust_remote_code=True)
    assert type(model).__name__ == "CustomT5" and marker.exists()


def _tiny_args() -> list[str]:
    return [arg for key, value in TINY.items() for arg in (f"--{key.replace('_', '-')}", str(value))]
