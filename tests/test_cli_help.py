"""The command line a new user meets: grouped help with examples and true defaults, one default env for train and
eval, close matches for a mistyped flag, errors before notes, and a config.json that is the run as it ran."""

from __future__ import annotations

import json

import pytest

from text_envs_app.algorithms import make_config, recorded_config
from text_envs_app.cli import build_parser, main

COMMANDS = ("train", "eval", "bench", "frontier", "demo")
TINY = ["--env", "TextCopy-v0", "--threads", "1", "--curve-points", "0", "--frontier-samples", "0",
        "--eval-examples", "8"]


def help_text(command: str, capsys) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    return capsys.readouterr().out


def test_train_help_is_grouped_with_examples(capsys):
    text = help_text("train", capsys)
    for title in ("what to train:", "data:", "algorithm:", "KL penalty and baseline:", "evaluation:",
                  "run folder and resume:", "performance:", "Ray RLlib (--engine rllib):"):
        assert f"\n{title}\n" in text, title
    assert "other options:" not in text  # every TrainConfig field is in a section
    examples = text.split("\nexamples:\n", 1)[1]
    assert 3 <= examples.count("  text-envs train ") <= 5
    assert text.index("--kl-coef") > text.index("KL penalty and baseline:") > text.index("--n-epochs")


@pytest.mark.parametrize("command", COMMANDS)
def test_no_option_shows_none_as_its_default(command, capsys):
    text = help_text(command, capsys)
    assert "default: None" not in text and "None:" not in text


def test_true_defaults_are_named(capsys):
    text = " ".join(help_text("train", capsys).split())
    assert "--model MODEL a model folder or hub name; default: the package's shipped warm-started tiny T5 " in text
    assert "default: 0.5 for TextContinuation-v0" in text  # --kl-coef, per env
    assert "default: the whole rollout" in text  # --batch-size
    assert "--steps STEPS generated tokens (env steps, all envs together) of RL training (default: 32768)" in text


def test_eval_and_train_default_to_the_same_env(capsys):
    train_env = make_config().env
    assert train_env == "TextContinuation-v0"
    eval_help = " ".join(help_text("eval", capsys).split())
    assert f"the registered env id (default: the run's, else {train_env}," in eval_help
    assert "TextSummarization-v0" not in eval_help


@pytest.mark.parametrize("command,typo,meant", [("train", "--prompt_field", "--prompt-field"),
                                                ("train", "--step", "--steps"),
                                                ("eval", "--prompt_field", "--prompt-field"),
                                                ("train", "--kl_coef=0.1", "--kl-coef")])
def test_a_mistyped_flag_gets_the_command_usage_and_a_close_match(command, typo, meant, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, typo, "64"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"usage: text-envs {command} ")
    assert f"text-envs {command}: error: unrecognized arguments: {typo}" in err
    assert f"Did you mean '{meant}'" in err


def test_flags_are_not_abbreviated():
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--step", "64"])
    assert build_parser().parse_args(["train", "--steps", "64"]).steps == 64


def test_an_existing_output_folder_is_refused_before_any_note(tmp_path, capsys):
    (tmp_path / "old.txt").write_text("a previous run")
    assert main(["train", *TINY, "--steps", "100", "--out", str(tmp_path)]) == 2  # 100: not whole rollouts
    captured = capsys.readouterr()
    assert "exists and is not empty" in captured.err
    assert captured.out == ""  # no "--steps 100 is not a whole number of rollouts" note before the error


def test_recorded_config_resolves_the_run_time_defaults():
    ppo = recorded_config(make_config(algo="ppo"))
    assert (ppo["kl_coef"], ppo["batch_size"], ppo["eval_decoding"], ppo["difficulty"]) == (0.5, 32 * 64, "sampled", 1)
    main_job = recorded_config(make_config())  # the main job's default: RLOO with the frontier's kl_coef
    assert (main_job["algo"], main_job["kl_coef"], main_job["group_size"], main_job["steps"]) == ("rloo", 0.5, 8, 122_880)
    assert ppo["threads"] == 1 and ppo["group_size"] == 1
    assert "num_env_runners" not in ppo and "num_learners" not in ppo
    grpo = recorded_config(make_config(env="TextCopy-v0", algo="grpo"))
    assert grpo["kl_coef"] == 0.0 and grpo["group_size"] == 4  # GRPO's own beta; the registry's group
    assert recorded_config(make_config(algo="grpo", kl_coef=0.3))["kl_coef"] == 0.3
    rllib = recorded_config(make_config(engine="rllib", num_env_runners=1))
    assert rllib["kl_coef"] == 0.5 and rllib["num_env_runners"] == 1
    assert rllib["group_size"] is None  # an SB3-only setting stays at its default (--engine rllib refuses others)


@pytest.mark.usefixtures("one_train_thread")
def test_config_json_records_the_values_used_and_resume_reads_it(tmp_path, capsys, interrupt_at_step):
    out = tmp_path / "run"
    stop = interrupt_at_step(8 + 3)  # 8 envs x 8 steps: the 3rd step of the second 64-token rollout
    assert main(["train", *TINY, "--steps", "128", "--n-envs", "8", "--out", str(out)]) == 130
    stop()
    config = json.loads((out / "config.json").read_text())
    for key in ("kl_coef", "threads", "batch_size", "group_size", "eval_decoding", "steps"):
        assert config[key] is not None, key
    assert (config["kl_coef"], config["threads"], config["batch_size"]) == (0.02, 1, 64)
    assert "num_env_runners" not in config
    capsys.readouterr()
    assert main(["train", "--out", str(out), "--resume"]) == 0
    assert "at 64 of 128 tokens" in capsys.readouterr().out
    assert json.loads((out / "results.json").read_text())["tokens"] == 128
    assert json.loads((out / "config.json").read_text()) == config
