"""The layers import only downward: text_envs < lm_core < sb3_ext | rllib_ext < text_envs_app (docs/ARCHITECTURE.md;
no adapter imports the other).

Checked on the source, every import statement included (the lazy ones inside functions too), so a training
import hidden in a rarely run branch of the env package still fails here.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# package -> top-level modules it must never import
FORBIDDEN = {
    "text_envs": {"lm_core", "sb3_ext", "rllib_ext", "text_envs_app", "stable_baselines3", "sb3_contrib", "ray"},
    "lm_core": {"sb3_ext", "rllib_ext", "text_envs_app", "stable_baselines3", "sb3_contrib", "ray"},
    "sb3_ext": {"rllib_ext", "text_envs_app", "ray"},  # no adapter imports the other
    "rllib_ext": {"sb3_ext", "text_envs_app", "stable_baselines3", "sb3_contrib"},
}


def imported_top_levels(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_a_layer_imports_nothing_above_it(package):
    offenders = {
        str(path.relative_to(ROOT)): sorted(imported_top_levels(path) & FORBIDDEN[package])
        for path in sorted((ROOT / package).rglob("*.py"))
    }
    offenders = {path: names for path, names in offenders.items() if names}
    assert not offenders, f"{package} imports a layer above it: {offenders}"


def test_the_checker_sees_a_lazy_upward_import(tmp_path):
    # negative control: an import inside a function body is found
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from sb3_ext.policy import LLMPolicy\n    import stable_baselines3.ppo\n")
    assert imported_top_levels(module) == {"sb3_ext", "stable_baselines3"}


def test_python_m_text_envs_runs_the_command():
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "text_envs", "--help"], capture_output=True, text=True,
                         cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "train" in out.stdout and "bench" in out.stdout
