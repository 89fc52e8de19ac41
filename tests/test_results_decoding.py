"""Every results.md says truthfully how the texts of each of its rows were decoded (greedy; sampled with its seed;
best-of-n with its n), for train, eval and bench; an eval on the run's own training file scores the run's test
rows and says so; concurrent evals of one run folder (which take no lock) succeed and agree."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from text_envs_app import bench
from text_envs_app.cli import main
from text_envs_app.run_lock import RunLock

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(env="TextCopy-v0", steps=32, n_envs=4, n_steps=8, batch_size=16, n_epochs=1, eval_examples=4,
            curve_points=0, seed=1, threads=1)
PAIRED_ROWS = ("greedy_reward", "greedy_kl", "sampled_reward", "sampled_kl")


def quiet(*_: object) -> None:
    pass


def table_rows(md: str) -> set[str]:
    return {line.split("|")[1].strip() for line in md.splitlines()
            if line.startswith("| ") and not line.startswith("| metric")}


def assert_truthful(md: str, decoding: str, seed: int, n: int | None = None, split: str = "test") -> None:
    """The note names the table's decoding (with its seed / n) and only rows the table has, and every row of the
    other decoding the table has is named with how it was decoded."""
    rows = table_rows(md)
    note = next(line for line in md.splitlines() if line.startswith("Texts: "))
    expected = {"greedy": "Texts: greedy;",
                "sampled": f"Texts: one sampled per {split} prompt (seed {seed});",
                "best-of-n": f"Texts: best-of-n, the highest-reward of n={n} samples per {split} prompt (seed {seed});"}
    assert note.startswith(expected[decoding]), note
    named = set(re.findall(r"\b(?:greedy|sampled)_(?:reward|kl)\b|\bkl_bound\b|\bstart_ppl\b|\bkl\b", note))
    assert named <= rows, f"the note names rows the table does not have: {named - rows}"
    assert {r for r in rows if r in PAIRED_ROWS} <= named  # every other-decoding row is explained
    own = {"greedy": "greedy_", "sampled": "sampled_", "best-of-n": "best-of-n_"}[decoding]
    assert not any(r.startswith(own) for r in rows)  # the table's own decoding is its main rows, not a side row
    for row in named & {"sampled_reward", "sampled_kl"}:
        assert re.search(rf"{row}(?: and sampled_kl)?: one text sampled per {split} prompt \(seed {seed}", note)


@pytest.fixture(scope="module")
def run(train_finished_run) -> Path:
    return train_finished_run("decoding", **TINY)


def test_train_results_state_the_decoding_of_every_row(run):
    md = (run / "results.md").read_text()
    assert {"reward", "kl", "sampled_reward", "sampled_kl"} <= table_rows(md)
    assert_truthful(md, "greedy", seed=1)


@pytest.mark.parametrize("decoding, flags, header", [
    ("greedy", [], "(greedy decoding)"),
    ("sampled", ["--decoding", "sampled", "--seed", "7"], "(sampled decoding)"),
    ("best-of-n", ["--decoding", "best-of-n", "--n", "3", "--seed", "7"], "(best-of-3 decoding)"),
])
def test_eval_results_header_and_note_agree_with_the_rows(run, tmp_path, decoding, flags, header):
    out = tmp_path / "ev"
    assert main(["eval", str(run), "--examples", "4", *flags, "--out", str(out)]) == 0
    md = (out / "results.md").read_text()
    assert md.splitlines()[0].endswith(f"test examples of TextCopy-v0 {header}")
    assert_truthful(md, decoding, seed=7 if flags else 0, n=3)  # eval's own --seed (default 0), not the run's


def test_bench_results_state_each_rows_decoding(tmp_path, monkeypatch):
    task = bench.BenchTask("TextCopy-v0", "copy", decoding="sampled")
    monkeypatch.setitem(bench.BENCH_PRESETS, "tiny-decoding",
                        dict(envs=(task,), steps=32, n_envs=4, n_steps=8, eval_examples=4, seeds=2, kl_coefs=(0.0,),
                             curve_points=0, methods=("greedy", "sampled", "ppo")))
    rows = bench.run_benchmark("tiny-decoding", str(tmp_path / "b"), reps=200, log=quiet)
    assert {(r["method"], r["decoding"]) for r in rows} == {("greedy", "greedy"), ("sampled", "sampled"),
                                                             ("ppo", "sampled")}
    md = (tmp_path / "b" / "results.md").read_text()
    assert "| method | decoding |" in md
    cells = {line.split("|")[1].strip(): line.split("|")[2].strip() for line in md.splitlines()
             if line.startswith("| ") and not line.startswith("| method")}
    assert cells == {"greedy": "greedy", "sampled": "sampled, seeds 0, 1", "ppo": "sampled, seeds 0, 1"}


def _news_rows(n: int) -> list[dict[str, str]]:
    return [{"id": str(i), "article": f"Town{i} council met on Monday. The council approved a new park after a "
                                      f"long debate about costs.", "highlights": f"Town{i} council approved a new park."}
            for i in range(n)]


def test_eval_on_the_runs_own_file_scores_its_test_rows_and_says_so(tmp_path, capsys):
    data = tmp_path / "news.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in _news_rows(30)))
    out = tmp_path / "run"
    assert main(["train", "--env", "TextSummarization-v0", "--dataset", str(data), "--prompt-field", "article",
                 "--reference-field", "highlights", "--steps", "16", "--n-envs", "2", "--n-steps", "8",
                 "--eval-examples", "3", "--curve-points", "0", "--threads", "1", "--max-new-tokens", "4",
                 "--out", str(out)]) == 0
    test_rows = set(json.loads((out / "splits.json").read_text())["test"])
    capsys.readouterr()
    assert main(["eval", str(out), "--dataset", str(data), "--out", str(tmp_path / "ev")]) == 0
    text = capsys.readouterr().out
    note = f"Data: the run's own test rows of {data} (row numbers in the run's splits.json)"
    assert note in text and "on 3 test examples" in text
    assert note in (tmp_path / "ev" / "results.md").read_text()
    generations = [json.loads(x) for x in (tmp_path / "ev" / "generations.jsonl").read_text().splitlines()]
    assert {g["reference"] for g in generations} == {f"Town{i - 1} council approved a new park." for i in test_rows}
    # another file is scored whole, with no such note
    other = tmp_path / "other.jsonl"
    other.write_text("".join(json.dumps(r) + "\n" for r in _news_rows(5)))
    assert main(["eval", str(out), "--dataset", str(other), "--examples", "5"]) == 0
    text = capsys.readouterr().out
    assert "Data: " not in text and "on 5 test examples" in text


@pytest.mark.expensive  # eight fresh interpreters importing torch and transformers: 195 s on 2 busy cores
def test_eight_concurrent_evals_of_one_run_succeed_and_agree_while_it_is_locked(run, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    code = "import sys; from text_envs_app.cli import main; sys.exit(main(sys.argv[1:]))"
    with RunLock(run, "a writer"):  # eval reads: it takes no lock and is not refused by one
        logs = [open(tmp_path / f"ev{i}.log", "w") for i in range(8)]
        procs = [subprocess.Popen([sys.executable, "-c", code, "eval", str(run), "--examples", "4", "--out",
                                   str(tmp_path / f"ev{i}")], stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
                 for i, log in enumerate(logs)]
        codes = [p.wait(timeout=540) for p in procs]
        for log in logs:
            log.close()
    for i, returncode in enumerate(codes):
        assert returncode == 0, (tmp_path / f"ev{i}.log").read_text()[-2000:]
    outputs = {(tmp_path / f"ev{i}" / "generations.jsonl").read_text() for i in range(8)}
    tables = {json.dumps(json.loads((tmp_path / f"ev{i}" / "results.json").read_text())["table"]) for i in range(8)}
    assert len(outputs) == 1 and len(tables) == 1


def test_the_note_names_only_rows_the_table_has():
    from text_envs_app.evaluation import MetricTable, format_table

    table = MetricTable(reward=0.5, sampled_reward=0.25)  # no KL rows (no reference to measure them against)
    table.decoding, table.seed = "greedy", 3
    md = format_table({"test": table})
    assert_truthful(md, "greedy", seed=3)
    assert "Texts: greedy; the metrics along them; sampled_reward: one text sampled per test prompt (seed 3)." in md
