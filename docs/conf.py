"""Sphinx configuration of the text-envs documentation (MyST markdown pages, furo theme, autodoc API reference).

Build: ``pip install -e ".[docs]" && sphinx-build -W -b html docs docs/_build/html``.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import sys
import warnings

from docutils.parsers.rst import Directive, directives

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, ROOT)  # the packages of this checkout, installed or not
# autodoc reads every name of a compatibility shim, and each read warns that the old path goes away: expected here
warnings.filterwarnings("ignore", message=r".* the old path is removed in text-envs", category=FutureWarning)

project = "text-envs"
author = "the text-envs authors"
copyright = "the text-envs authors"
release = importlib.import_module("text_envs").__version__

extensions = ["myst_parser", "sphinx.ext.autodoc", "sphinx.ext.napoleon", "sphinx.ext.viewcode"]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
exclude_patterns = ["_build", "examples", "Thumbs.db", ".DS_Store"]
myst_enable_extensions = ["colon_fence"]
myst_heading_anchors = 3  # `[text](page.md#a-heading)` links to headings

html_theme = "furo"
html_title = "text-envs"

autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_member_order = "bysource"
autodoc_typehints = "description"
# rllib_ext needs the [rllib] extra; without it the reference is still built from the docstrings
autodoc_mock_imports = [] if importlib.util.find_spec("ray") else ["ray"]
napoleon_google_docstring = True  # "Attributes:" sections; the ":param x:" fields pass through as reST
napoleon_numpy_docstring = False
autodoc_inherit_docstrings = False  # Gymnasium's and SB3's own docstrings are theirs, not this project's


class AutoModulesOf(Directive):
    """``.. automodules-of:: package`` expands to one ``automodule`` per module of the package, so the reference
    follows the package's files as they are added, split or renamed (``__main__`` and private modules left out; a
    module whose docstring begins with "Deprecated" shows that docstring only, not the old names it forwards)."""

    required_arguments = 1
    option_spec = {"exclude": directives.unchanged}

    def run(self) -> list:
        package = importlib.import_module(self.arguments[0])
        excluded = set(self.options.get("exclude", "").split())
        names = sorted(info.name for info in pkgutil.walk_packages(package.__path__, package.__name__ + ".")
                       if not any(part.startswith("_") for part in info.name.split("."))
                       and info.name not in excluded)
        lines = []
        for name in names:
            lines += [name, "-" * len(name), "", f".. automodule:: {name}"]
            doc = (importlib.import_module(name).__doc__ or "").lstrip()
            if doc.startswith("Deprecated"):  # a compatibility shim: its docstring says where the names went
                lines.append("   :no-members:")
            lines.append("")
        self.state_machine.insert_input(lines, self.state_machine.input_lines.source(0))
        return []


class PublicApi(Directive):
    """``.. public-api:: package`` documents a package's ``__all__``, leaving out the names it re-exports from
    another package (``sb3_ext`` re-exports ``lm_core``'s): those are documented once, where they are defined,
    and listed here by name."""

    required_arguments = 1

    def run(self) -> list:
        name = self.arguments[0]
        package = importlib.import_module(name)
        top = name.split(".")[0]
        reexported = []
        for member in getattr(package, "__all__", []):
            home = getattr(getattr(package, member, None), "__module__", None) or top
            if home.split(".")[0] != top and home.split(".")[0] in PACKAGES:
                reexported.append((member, home.split(".")[0]))
        lines = [f".. automodule:: {name}"]
        if reexported:
            lines.append(f"   :exclude-members: {', '.join(member for member, _ in reexported)}")
            lines += ["", f"Also importable from ``{name}`` (documented where they are defined): "
                      + ", ".join(f":obj:`{home}.{member} <{home}.{member}>`" for member, home in reexported) + "."]
        self.state_machine.insert_input(lines + [""], self.state_machine.input_lines.source(0))
        return []


#: The guides in reading order; every other page of docs/guides/ follows them, by name.
GUIDES = ["main_job", "sb3", "rllib", "rewards", "cli", "checkpoints", "benchmarks", "shipped_model", "translation_zh"]


class GuidesToctree(Directive):
    """``.. guides-toctree::`` is the toctree of docs/guides/: :data:`GUIDES` first, then any other page there (a
    glob would warn, and fail ``-W``, on the day every page is named)."""

    def run(self) -> list:
        folder = os.path.join(os.path.dirname(__file__), "guides")
        others = sorted(name[:-3] for name in os.listdir(folder) if name.endswith(".md") and name[:-3] not in GUIDES)
        lines = [".. toctree::", "   :maxdepth: 2", "   :caption: Guides", ""]
        lines += [f"   guides/{name}" for name in GUIDES + others]
        self.state_machine.insert_input(lines + [""], self.state_machine.input_lines.source(0))
        return []


PACKAGES = ("text_envs", "lm_core", "sb3_ext", "rllib_ext", "text_envs_app")


def markdown_env_cards(app, what, name, obj, options, lines: list[str]) -> None:
    """Env cards are written in Markdown (``## Action Space`` headings, pipe tables, as Gymnasium's): headings
    become rubrics and tables literal blocks, so the reST reader shows them as written."""
    out, in_table = [], False
    for line in lines:
        stripped = line.strip()
        if stripped.startswith("## "):
            out += [f".. rubric:: {stripped[3:]}", ""]
            continue
        if stripped.startswith("|") and not in_table:
            out += ["::", ""]
            in_table = True
        elif in_table and not stripped.startswith("|"):
            out.append("")
            in_table = False
        out.append("    " + line if in_table else line)
    lines[:] = out


def setup(app) -> None:
    app.add_directive("automodules-of", AutoModulesOf)
    app.add_directive("public-api", PublicApi)
    app.add_directive("guides-toctree", GuidesToctree)
    app.connect("autodoc-process-docstring", markdown_env_cards)
