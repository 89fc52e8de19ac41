"""README.md's "Use" block runs as written (issue 16 item 5): offline, in a fresh folder, as a new user would."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def _section_code(title: str) -> str:
    text = README.read_text()
    section = text.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert blocks, f"README section {title!r} has no python block"
    return blocks[0]


def test_readme_use_block_runs_as_written(tmp_path):
    code = _section_code("Use")
    assert "my_rows.jsonl" in code  # the block writes the file it reads
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env={**__import__("os").environ, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.startswith("2 ('summarize: The council approved a new park")
    assert (tmp_path / "my_rows.jsonl").exists()


def test_readme_documents_the_cpu_build_and_the_output_files():
    text = README.read_text()
    setup = text.split("\n## Set-up\n", 1)[1].split("\n## ", 1)[0]
    assert "--index-url https://download.pytorch.org/whl/cpu" in setup
    assert 'pip install torch==2.13.0 && pip install -e ".[test]"' in setup  # the command that works here
    cli = text.split("\n## Command line\n", 1)[1].split("\n## ", 1)[0]
    for name in ("config.json", "state.json", "results.json", "splits.json", "generations.jsonl",
                 "tensorboard --logdir runs/train/tb"):
        assert name in cli, name
