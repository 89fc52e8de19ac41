"""``text-envs train --lora-r R``: LoRA adapters train, the model's own weights stay, the KL column is read against
the start model, hf/ is the merged model, and a stopped run resumes to the same adapters."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch as th

from text_envs.errors import TextEnvsError
from text_envs_app.algorithms import MAIN_JOB_FREEZE, make_config
from text_envs_app.config import TrainConfig
from text_envs_app.train import train

pytest.importorskip("peft")
pytestmark = pytest.mark.usefixtures("one_train_thread")  # tests/conftest.py: one torch thread, as resume needs

# TextCopy-v0 on a tiny T5 built from a config (q and v get adapters, peft's default for T5): 4 rollouts of 32 tokens
COPY = dict(env="TextCopy-v0", steps=128, n_envs=4, n_steps=8, batch_size=16, n_epochs=2, eval_examples=8,
            checkpoint_every=64, seed=3, lora_r=4, learning_rate=1e-2)


def quiet(*_: object) -> None:
    pass


def saved_policy(run: Path):
    from stable_baselines3 import PPO

    return PPO.load(run / "model.zip", device="cpu").policy


def test_lora_run_trains_adapters_only_and_writes_the_merged_model(tmp_path):
    from transformers import AutoModelForSeq2SeqLM

    from text_envs_app.engines.sb3 import starting_model

    out = tmp_path / "run"
    result = train(TrainConfig(**COPY, out=str(out)), log=quiet)
    saved = json.loads((out / "config.json").read_text())
    assert saved["lora_r"] == 4 and result["tokens"] == 128
    policy = saved_policy(out)
    assert policy.lora == dict(r=4, lora_alpha=8, lora_dropout=0.0)
    # the start model the KL column is read against: the policy's base, the adapters off (a TextCopy model is
    # random, rebuilt from the run's seed, so this also checks the base is the model the run started from)
    start = starting_model(type("Algo", (), {"policy": policy})(), TrainConfig(**COPY))
    base = dict(policy.model.get_base_model().named_parameters())
    start_weights = dict(start.named_parameters())
    adapted = [n for n in base if "lora_" not in n]
    assert adapted and all(th.equal(base[n], start_weights[n.replace(".base_layer", "")]) for n in adapted)
    moved = [n for n, p in base.items() if "lora_B" in n and p.abs().sum() > 0]
    assert moved, "the adapters did not train"
    # hf/ is a plain model: the adapters merged in, no peft needed to load it
    merged = AutoModelForSeq2SeqLM.from_pretrained(out / "hf")
    plain = policy.model.merge_and_unload()
    for name, p in merged.state_dict().items():
        assert th.allclose(p, plain.state_dict()[name], atol=1e-6), name
    assert any(not th.equal(merged.state_dict()[n], start.state_dict()[n]) for n in start.state_dict())
    assert result["after"]["kl"] > 0 and result["before"]["kl"] == 0


def test_a_stopped_lora_run_resumes_to_the_same_adapters(tmp_path, interrupt_at_step):
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    train(TrainConfig(**COPY, out=str(straight)), log=quiet)
    stop = interrupt_at_step(8 + 8 + 3)  # rollouts 0 and 1 done (64 tokens): the 3rd step of rollout 2
    assert train(TrainConfig(**COPY, out=str(stopped)), log=quiet)["tokens"] == 64
    stop()
    train(TrainConfig(out=str(stopped), resume=True), log=quiet)
    a, b = saved_policy(straight).state_dict(), saved_policy(stopped).state_dict()
    assert a.keys() == b.keys() and any("lora_A" in k for k in a)
    differ = [k for k in a if isinstance(a[k], th.Tensor) and not th.equal(a[k], b[k])]
    assert not differ, f"{len(differ)} tensors differ, e.g. {differ[:3]}"


def test_lora_settings_are_checked_with_the_fix():
    with pytest.raises(TextEnvsError, match="--lora-alpha shape LoRA adapters.*add --lora-r"):
        make_config(lora_alpha=16).validate()
    with pytest.raises(TextEnvsError, match="--freeze encoder and --lora-r 8 both choose what trains"):
        make_config(lora_r=8, freeze="encoder").validate()
    with pytest.raises(TextEnvsError, match="at least 1"):
        make_config(lora_r=0).validate()
    with pytest.raises(TextEnvsError, match="--lora-target-modules names linear layers"):
        make_config(lora_r=8, lora_target_modules=" , ").validate()
    with pytest.raises(TextEnvsError, match="--engine rllib does not take --lora-r"):
        make_config(engine="rllib", lora_r=8).validate()
    # the main job's default --freeze names what trains without LoRA: with it, the adapters do
    assert make_config().freeze == MAIN_JOB_FREEZE and make_config(lora_r=8).freeze is None
    assert make_config(lora_r=8, lora_target_modules="q,k, v").lora_config() == dict(
        r=8, lora_alpha=16, lora_dropout=0.0, target_modules=["q", "k", "v"])


def test_adapters_on_layers_the_model_lacks_are_refused_with_its_layer_names():
    from lm_core.backends import default_model
    from lm_core.lora import apply_lora

    with pytest.raises(TextEnvsError, match=r"--lora-target-modules.*named k, lm_head, o, q, v, wi, wo\."):
        apply_lora(default_model(64)[0], dict(r=4, target_modules=["nosuch"]))
