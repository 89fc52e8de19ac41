"""The docs: README.md stays a front door, every Python block of the docs is a file under docs/examples/ that
runs as written (offline, in a fresh folder, as a new user would), and the pages say what the tests and CI check.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
EXAMPLES = DOCS / "examples"
README_MAX_LINES = 200
# the two set-up commands of the README: the main job on the shipped defaults, and the fast tests (CI runs it)
MAIN_JOB = "text-envs train"
FAST_TESTS = 'python -m pytest -q -n 2 -m "not expensive"'


def _pages() -> list[Path]:
    return sorted(path for path in DOCS.rglob("*.md") if "_build" not in path.parts)


def _python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def _included_examples(page: Path) -> list[Path]:
    """The files a MyST page pulls in with ``{literalinclude}``."""
    return [(page.parent / name).resolve() for name in re.findall(r"```\{literalinclude\}\s+(\S+)", page.read_text())]


def _section(text: str, title: str) -> str:
    assert f"\n## {title}\n" in text, f"no section {title!r}"
    return text.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]


def _run_example(name: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, str(EXAMPLES / name)], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=env)
    assert proc.returncode == 0, f"docs/examples/{name} failed:\n{proc.stderr[-4000:]}"
    return proc


# ---------------------------------------------------------------------------------------------------------------
# the pages


def test_readme_is_a_front_door():
    lines = README.read_text().splitlines()
    assert len(lines) <= README_MAX_LINES, (
        f"README.md has {len(lines)} lines, more than {README_MAX_LINES}: move the detail to a page under docs/")
    first_screen = "\n".join(lines[:60])
    for needed in (MAIN_JOB, FAST_TESTS, "text-envs demo", "PPO(LLMPolicy, env"):
        assert needed in first_screen, f"{needed!r} is not in the README's first screen"
    for word in ("seed document", "issue 1", "issue 2"):  # project-internal words mean nothing to a reader
        assert word not in README.read_text().lower(), word


def test_the_readme_set_up_commands_are_the_ones_ci_runs():
    setup = _section(README.read_text(), "Set-up")
    assert "--index-url https://download.pytorch.org/whl/cpu" in setup  # the CPU build of torch
    assert f"\n{MAIN_JOB} " in setup and f"\n{FAST_TESTS} " in setup
    assert FAST_TESTS in (ROOT / ".ci" / "run").read_text()


def test_every_python_block_of_the_readme_is_an_example_file():
    blocks = _python_blocks(README.read_text())
    assert blocks, "the README has no Python example"
    examples = {path.read_text(): path.name for path in EXAMPLES.glob("*.py")}
    for block in blocks:
        assert block in examples, f"this README block is not a file of docs/examples/:\n{block[:300]}"


def test_the_docs_pages_include_their_python_from_example_files():
    used = set()
    for page in _pages():
        assert not _python_blocks(page.read_text()), (
            f"{page.relative_to(ROOT)} has an inline python block: put it in docs/examples/ and include it with "
            "```{literalinclude} (a test runs every example)")
        for path in _included_examples(page):
            assert path.is_file(), f"{page.relative_to(ROOT)} includes {path}, which does not exist"
            used.add(path)
    readme_blocks = _python_blocks(README.read_text())
    for example in EXAMPLES.glob("*.py"):
        assert example.resolve() in used or example.read_text() in readme_blocks, (
            f"docs/examples/{example.name} is shown on no page")


def test_the_readme_links_every_guide_and_its_links_resolve():
    text = README.read_text()
    for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text):
        if "://" not in target:
            assert (ROOT / target).exists(), f"README.md links {target}, which does not exist"
    for page in sorted((DOCS / "guides").glob("*.md")):
        assert f"(docs/guides/{page.name})" in text, f"README.md does not link docs/guides/{page.name}"


def test_every_example_is_run_by_a_test():
    """This file runs the examples of the general pages; a guide's own test file may run its example instead."""
    tests = " ".join(path.read_text() for path in Path(__file__).parent.glob("test_*.py"))
    for example in sorted(EXAMPLES.glob("*.py")):
        assert f'"{example.name}"' in tests, f"no test runs docs/examples/{example.name}"


def test_the_cli_guide_names_the_run_folder_files():
    cli = (DOCS / "guides" / "cli.md").read_text()
    for name in ("config.json", "state.json", "results.json", "splits.json", "generations.jsonl",
                 "tensorboard --logdir runs/train/tb"):
        assert name in cli, name


#: a test cited by a page or a docstring: ``tests/test_x.py`` or ``test_x.py::test_name``
TEST_CITATION = re.compile(r"\b(test_[a-z0-9_]+\.py)(?:::(test_[a-z0-9_]+))?")


def test_the_tests_the_docs_cite_exist():
    """Tests move between files as the code's components do: every file and test a page or a module names is there."""
    sources = [README, *_pages()] + sorted(path for package in ("text_envs", "lm_core", "sb3_ext", "rllib_ext",
                                                                   "text_envs_app", "benchmarks", "scripts")
                                           for path in (ROOT / package).rglob("*.py"))
    missing = []
    for source in sources:
        for file, name in TEST_CITATION.findall(source.read_text(encoding="utf-8")):
            test_file = ROOT / "tests" / file
            if not test_file.exists() or (name and not re.search(rf"^def {name}\(", test_file.read_text(), re.M)):
                missing.append(f"{source.relative_to(ROOT)}: {file}{'::' + name if name else ''}")
    assert not missing, "cited tests that do not exist (moved? renamed?):\n" + "\n".join(missing)


def test_the_fast_suite_time_is_stated_once():
    """The fast tests' measured time is stated in docs/getting_started.md and on no other page."""
    timed = re.compile(r"\b\d+:\d\d\b|\b\d+(?:\.\d+)? ?(?:s|min|minutes|seconds)\b")
    stated = [f"{page.relative_to(ROOT)}: {line.strip()}" for page in [README, *_pages()]
              for line in page.read_text(encoding="utf-8").splitlines() if "not expensive" in line and timed.search(line)]
    assert len(stated) == 1 and stated[0].startswith("docs/getting_started.md: "), stated


# ---------------------------------------------------------------------------------------------------------------
# the examples, run as written


def test_quickstart_example_trains_and_decodes(tmp_path):
    out = _run_example("quickstart.py", tmp_path).stdout.strip().splitlines()[-1]
    prompt, rest = out.split(" -> ", 1)
    assert prompt.startswith("continue: ")
    reward = float(re.fullmatch(r".* \(reward (\S+)\)", rest).group(1))
    assert 0.0 <= reward <= 1.0  # the sentiment reward's range


def test_use_env_example_runs_as_written(tmp_path):
    proc = _run_example("use_env.py", tmp_path)
    assert proc.stdout.startswith("2 ('summarize: The council approved a new park")
    assert (tmp_path / "my_rows.jsonl").exists()  # the block writes the file it reads


def test_generate_hf_example_reads_a_run_folder(tmp_path):
    """The README's three lines on a run folder's ``hf/``, as ``text-envs train`` writes it (the policy's
    ``save_pretrained`` of the shipped model)."""
    import gymnasium as gym
    from stable_baselines3 import PPO

    import text_envs  # noqa: F401
    from sb3_ext import LLMPolicy

    model = PPO(LLMPolicy, gym.make("TextContinuation-v0"), n_steps=8, batch_size=8)
    model.policy.save_pretrained(tmp_path / "runs" / "train" / "hf")
    text = _run_example("generate_hf.py", tmp_path).stdout.strip()
    assert len(text.split()) >= 3, text  # the shipped model continues a review in words


@pytest.mark.expensive
def test_sb3_example_trains(tmp_path):
    _run_example("sb3_train.py", tmp_path, timeout=3600)
    assert (tmp_path / "summarizer.zip").is_file()
    assert (tmp_path / "summarizer-hf" / "config.json").is_file()


@pytest.mark.expensive
def test_performance_example_trains_at_sb3_defaults(tmp_path):
    _run_example("performance_sb3_defaults.py", tmp_path, timeout=1800)


@pytest.mark.expensive
def test_rllib_example_runs_on_local_ray(tmp_path):
    """The same file runs on a two-node cluster in tests/test_rllib_cluster.py; here Ray starts on this node."""
    pytest.importorskip("ray.rllib")
    proc = _run_example("rllib_algorithm_config.py", tmp_path, timeout=600)
    assert len([line for line in proc.stdout.splitlines() if " tokens: mean return " in line]) == 4, proc.stdout
    assert (tmp_path / "copy_lm" / "config.json").is_file()
