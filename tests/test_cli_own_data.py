"""Issue 16 from a new user's side: own data from the command line (fields, languages, any gym.make keyword),
honest splits of a single file, true messages, and `text-envs eval` on a user's file (issue 12 item 5).

Runs are in-process (`main([...])`: no second torch import) with budgets of one or two tiny rollouts."""

from __future__ import annotations

import json

import numpy as np
import pytest

from text_envs.data.sources import SplitFile
from text_envs.errors import DatasetLoadError, EmptyDatasetError
from text_envs_app.cli import _config, build_parser, main
from text_envs_app.config import TrainConfig, load_config_file

# prompts of a few dozen tokens: 48 prompt positions instead of the default 256 make every forward ~5x cheaper
TINY = ["--n-envs", "2", "--n-steps", "8", "--batch-size", "16", "--max-new-tokens", "8",
        "--env-kwarg", "max_prompt_tokens=48"]


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def _news_rows(n):
    return [{"article": f"The council of Town{i} approved a new park on Monday after {i + 3} months of debate.",
             "highlights": f"Town{i} council approved a new park.", "id": i} for i in range(n)]


# -------------------------------------------------------------------------------------------------- own fields
def test_env_kwarg_flags_and_config_keys_reach_gym_make(tmp_path):
    args = build_parser().parse_args([
        "train", "--prompt-field", "a.b", "--reference-field", "c", "--source-lang", "en", "--target-lang", "ro",
        "--env-kwargs", '{"max_prompt_tokens": 64, "prompt_template": "tl;dr {text}"}',
        "--env-kwarg", "max_prompt_tokens=32", "--env-kwarg", "truncation_side=left", "--env-kwarg", "dense_reward=true",
    ])
    cfg = _config(args)
    kwargs = cfg.env_kwargs()
    assert kwargs["prompt_field"] == "a.b" and kwargs["reference_field"] == "c"
    assert (kwargs["source_lang"], kwargs["target_lang"]) == ("en", "ro")
    # --env-kwarg values are JSON when they parse (32, true), text otherwise (left); they win over --env-kwargs
    assert kwargs["max_prompt_tokens"] == 32 and kwargs["truncation_side"] == "left" and kwargs["dense_reward"] is True
    assert kwargs["prompt_template"] == "tl;dr {text}"

    path = tmp_path / "run.json"
    path.write_text(json.dumps({"prompt-field": "document", "env_kwargs": {"max_prompt_tokens": 16}}))
    values = load_config_file(path)
    assert values == {"prompt_field": "document", "gym_kwargs": {"max_prompt_tokens": 16}}
    assert TrainConfig(**values).env_kwargs()["max_prompt_tokens"] == 16
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--env-kwarg", "no_equals_sign"])
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--env-kwargs", "[1, 2]"])


def test_train_on_own_columns_with_a_seeded_split(tmp_path, capsys):
    """A summarization file with other column names trains from the CLI; the file is split 80/10/10 by the
    seeded rule, the counts are printed and splits.json says which rows went where; the budget is rounded up to
    whole rollouts and says so; samples.md shows the start model's text beside the trained one's."""
    data = _write_jsonl(tmp_path / "news.jsonl", _news_rows(30))
    out = tmp_path / "run"
    assert main(["train", "--env", "TextSummarization-v0", "--dataset", str(data), "--prompt-field", "article",
                 "--reference-field", "highlights", "--steps", "10", *TINY, "--eval-examples", "8", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    text = captured.out
    assert "--steps 10 is not a whole number of rollouts (2 envs x 8 steps = 16 tokens each" in text
    assert "training 16 tokens (1 rollout)" in text
    assert json.loads((out / "config.json").read_text())["steps"] == 16
    assert "30 rows, split by a seeded rule (--split-seed 0) into train 24, validation 3 and test 3" in text
    assert "the test split has only 3 examples" in text and "evaluating the starting model on 3 test examples" in text
    assert "WARNING: metrics on 3 test examples are noisy" in text

    splits = json.loads((out / "splits.json").read_text())
    rows = {name: set(splits[name]) for name in ("train", "validation", "test")}
    assert sum(map(len, rows.values())) == 30 and set.union(*rows.values()) == set(range(1, 31))
    assert (len(rows["train"]), len(rows["validation"]), len(rows["test"])) == (24, 3, 3)
    expected = SplitFile(str(data)).assignment(30)
    assert rows["test"] == {int(i) + 1 for i in expected["test"]}

    samples = (out / "samples.md").read_text()
    assert samples.count("**start model**:") == 3 and samples.count("**ppo**:") == 3
    test_refs = {f"Town{i - 1} council approved a new park." for i in rows["test"]}  # row n is id n-1
    assert {line.split(": ", 1)[1] for line in samples.splitlines() if line.startswith("**reference**")} == test_refs

    # item 6: the bar's rate is the average in tokens/s; transformers' own bars stay hidden
    assert "tokens/s average" in captured.err
    assert "Loading weights" not in captured.err and "Writing model shards" not in captured.err

    # `text-envs eval RUN` evaluates on the run's own test split (the same seeded split)
    assert main(["eval", str(out), "--out", str(tmp_path / "ev")]) == 0
    lines = [json.loads(x) for x in (tmp_path / "ev" / "generations.jsonl").read_text().splitlines()]
    assert {g["reference"] for g in lines} == test_refs
    # the run's hf/ folder (a Hugging Face checkpoint with its tokenizer) evaluates too; on the run's own file, its
    # test rows (tests/test_results_decoding.py)
    assert main(["eval", str(out / "hf"), "--dataset", str(data), "--prompt-field", "article", "--reference-field",
                 "highlights", "--examples", "2", "--max-new-tokens", "4"]) == 0
    text = capsys.readouterr().out
    assert f"evaluating {out / 'hf'} (greedy decoding) on 2 test examples" in text
    assert f"Data: the run's own test rows of {data}" in text


def test_a_missing_column_names_the_flags(tmp_path, capsys):
    data = _write_jsonl(tmp_path / "news.jsonl", _news_rows(10))
    assert main(["train", "--env", "TextSummarization-v0", "--dataset", str(data), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "Field 'document' not found" in err and "'article'" in err and "--prompt-field, --reference-field" in err
    assert not (tmp_path / "o").exists()  # refused before an output folder was made


def test_explicit_train_and_test_files(tmp_path, capsys):
    train = _write_jsonl(tmp_path / "train.jsonl", _news_rows(6))
    test = _write_jsonl(tmp_path / "test.jsonl", _news_rows(9)[6:])
    cfg = TrainConfig(train_file=str(train), test_file=str(test), prompt_field="article", reference_field="highlights")
    assert cfg.data_spec() == {"train": str(train), "test": str(test)}
    import gymnasium as gym

    assert gym.make(cfg.env, split="test", **cfg.env_kwargs()).unwrapped.num_examples == 3
    assert gym.make(cfg.env, split="train", **cfg.env_kwargs()).unwrapped.num_examples == 6
    for bad in (dict(train_file=str(train)), dict(train_file=str(train), test_file=str(test), dataset=str(train)),
                dict(train_file=str(train), test_file=str(test), eval_split="validation")):
        flags = sum(([f"--{k.replace('_', '-')}", v] for k, v in bad.items()), [])
        assert main(["train", "--env", "TextSummarization-v0", *flags]) == 2
        assert "--train-file" in capsys.readouterr().err


@pytest.mark.parametrize("task", ["summarization", "dialogue", "translation", "continuation"])
def test_eval_on_a_users_file_writes_generations(tmp_path, task, capsys):
    """Issue 12 item 5: `text-envs eval MODEL --env ID --dataset FILE --prompt-field F --reference-field R --out
    DIR` on every task, with the task's own columns named from the command line."""
    if task == "summarization":
        rows, args = _news_rows(3), ["--env", "TextSummarization-v0", "--prompt-field", "article",
                                     "--reference-field", "highlights"]
    elif task == "dialogue":
        rows = [{"turns": ["Hello, can I book a table?", "For how many people?"], "answer": f"For {i} people."}
                for i in range(2, 5)]
        args = ["--env", "DialogueGeneration-v0", "--prompt-field", "turns", "--reference-field", "answer"]
    elif task == "continuation":  # prompt-only rows: the first prompt_words words are the prompt, the rest the reference
        rows = [{"review": f"We went to the new cafe on Main Street {i} days ago and"} for i in range(2)]
        rows.append({"review": "Short."})  # no words left over: no reference
        args = ["--env", "TextContinuation-v0", "--prompt-field", "review", "--env-kwarg", "prompt_words=6"]
    else:
        rows = [{"pair": {"en": f"the house is red {i}", "ro": f"casa este rosie {i}"}} for i in range(3)]
        args = ["--env", "MachineTranslation-v0", "--prompt-field", "pair.en", "--reference-field", "pair.ro",
                "--source-lang", "en", "--target-lang", "ro"]
    data = _write_jsonl(tmp_path / f"{task}.jsonl", rows)
    out = tmp_path / "ev"
    assert main(["eval", "--dataset", str(data), *args, "--max-new-tokens", "6", "--env-kwarg", "max_prompt_tokens=48",
                 "--out", str(out)]) == 0
    text = capsys.readouterr().out
    metric = "sentiment-classifier" if task == "continuation" else "rouge-l"  # the table's metrics follow the task
    assert f"every row of {data}" in text and "on 3 test examples" in text and f"| {metric} |" in text
    lines = [json.loads(x) for x in (out / "generations.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(lines) == 3
    if task == "continuation":
        refs = [f"on Main Street {i} days ago and" for i in range(2)] + [None]
        assert all(0.0 <= g["sentiment"] <= 1.0 for g in lines)  # the env's reward, scored per text
    else:
        refs = [r["highlights"] if task == "summarization" else r["answer"] if task == "dialogue" else r["pair"]["ro"]
                for r in rows]
    assert [g.get("reference") for g in lines] == refs
    for g in lines:
        assert isinstance(g["prompt"], str) and isinstance(g["generation"], str)
        for name in (metric, "reward") + (("bleu", "meteor") if task != "continuation" else ()):
            assert 0.0 <= g[name] <= 1.0
    results = json.loads((out / "results.json").read_text())
    # the table's metric is the mean of the per-text scores written beside it
    assert results["table"][metric] == pytest.approx(np.mean([g[metric] for g in lines]), abs=1e-12)
    assert results["examples"] == 3 and (out / "results.md").read_text().count(f"| {metric} |") == 1


def test_translation_languages_from_the_field_names(tmp_path, wmt16_sample, capsys):
    """`--prompt-field translation.en --reference-field translation.ro` is enough: the env infers the pair."""
    code = main(["eval", "--env", "MachineTranslation-v0", "--dataset", str(wmt16_sample), "--prompt-field",
                 "translation.en", "--reference-field", "translation.ro", "--examples", "2", "--max-new-tokens", "4"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "needs target_lang" not in err


def test_eval_help_is_its_own():
    commands = build_parser()._subparsers._group_actions[0].choices
    train_help = commands["train"].format_help()  # every help text formats (a bare "%" once broke --help)
    for flag in ("--prompt-field", "--env-kwargs", "--env-kwarg", "--train-file", "--test-file", "--split-seed"):
        assert flag in train_help
    text = commands["eval"].format_help()
    for flag in ("--dataset", "--prompt-field", "--reference-field", "--examples", "--out", "--split", "--env-kwarg"):
        assert flag in text
    for flag in ("--algo", "--model", "--eval-examples", "--steps", "before and after"):
        assert flag not in text


# -------------------------------------------------------------------------------------------------- the split rule
def test_split_rule_is_seeded_disjoint_and_refuses_empty_splits(tmp_path):
    a, b = SplitFile("x.jsonl").assignment(101), SplitFile("x.jsonl").assignment(101)
    assert all(np.array_equal(a[k], b[k]) for k in a)  # the same file gives the same split, whatever the run
    assert [len(a[k]) for k in ("train", "validation", "test")] == [81, 10, 10]
    assert np.array_equal(np.sort(np.concatenate(list(a.values()))), np.arange(101))
    c = SplitFile("x.jsonl", seed=1).assignment(101)
    assert not np.array_equal(a["test"], c["test"])
    assert [len(SplitFile("x").assignment(3)[k]) for k in ("train", "validation", "test")] == [1, 1, 1]
    with pytest.raises(EmptyDatasetError, match="2 row"):
        SplitFile("x").assignment(2)
    with pytest.raises(DatasetLoadError, match="between 0 and 1"):
        SplitFile("x", test=0.0)

    import gymnasium as gym

    path = _write_jsonl(tmp_path / "two.jsonl", [{"document": "a b", "summary": "a"}] * 2)
    with pytest.raises(EmptyDatasetError, match="too few to split"):
        gym.make("TextSummarization-v0", dataset=SplitFile(str(path)), split="test")
    with pytest.warns(UserWarning, match="same rows as its 'train' split"):
        gym.make("TextSummarization-v0", dataset=str(path), split="test")
    with pytest.raises(DatasetLoadError, match="add a 'validation' entry"):
        gym.make("TextSummarization-v0", dataset={"train": str(path), "test": str(path)}, split="validation")


def test_cli_refuses_a_file_too_small_to_split(tmp_path, capsys):
    path = _write_jsonl(tmp_path / "two.jsonl", [{"document": "a b", "summary": "a"}] * 2)
    assert main(["train", "--env", "TextSummarization-v0", "--dataset", str(path), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "too few to split" in err and "--train-file/--test-file" in err
    assert not (tmp_path / "o").exists()


# -------------------------------------------------------------------------------------------------- messages
def test_device_cuda_without_cuda_is_refused(tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert main(["train", "--env", "TextCopy-v0", "--device", "cuda", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "--device cuda: no CUDA device is available" in err and "--device cpu" in err
    cfg = TrainConfig(env="TextCopy-v0", device="auto")
    cfg.validate()
    assert cfg.device == "cpu"  # config.json records the device used, not "auto"


def test_an_option_the_env_does_not_take_lists_those_it_does(tmp_path, capsys):
    data = _write_jsonl(tmp_path / "x.jsonl", _news_rows(5))
    assert main(["train", "--env", "TextCopy-v0", "--dataset", str(data), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "TextCopy-v0 takes no option 'dataset' (from --dataset or --env-kwargs)" in err
    assert "length, n_symbols, reverse" in err and "Traceback" not in err
    assert main(["train", "--env-kwarg", "max_prompt_tokenz=3", "--out", str(tmp_path / "o")]) == 2
    assert "no option 'max_prompt_tokenz'" in capsys.readouterr().err


def test_malformed_jsonl_names_the_file_the_line_and_the_reason(tmp_path, capsys):
    rows = [json.dumps(r) for r in _news_rows(5)]
    rows[3] = rows[3][:-5]  # line 4 is cut short
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(rows) + "\n")
    assert main(["train", "--env", "TextSummarization-v0", "--dataset", str(path), "--prompt-field", "article",
                 "--reference-field", "highlights", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert str(path) in err and "line 4:" in err and "Unterminated string" in err
    path.write_bytes(b'{"document": "a", "summary": "b"}\n{"document": "caf\xe9", "summary": "b"}\n')
    import gymnasium as gym

    with pytest.raises(DatasetLoadError, match=r"line 2: byte 0xe9 is not UTF-8"):
        gym.make("TextSummarization-v0", dataset=str(path))
    path.write_text('{"document": "a", "summary": "b"}\n["a", "b"]\n')
    with pytest.raises(DatasetLoadError, match="line 2 is a JSON list: expected a JSON object"):
        gym.make("TextSummarization-v0", dataset=str(path))
    csv_path = tmp_path / "bad.csv"
    csv_path.write_text("document,summary\na b,a\nc,d,e\n")
    with pytest.raises(DatasetLoadError, match="line 3: 3 fields where the header line has 2"):
        gym.make("TextSummarization-v0", dataset=str(csv_path))
