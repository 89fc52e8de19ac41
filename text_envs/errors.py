"""Error hierarchy of text-envs: every error says what was expected and how to fix it."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = [
    "TextEnvsError",
    "UnknownNameError",
    "DatasetLoadError",
    "DatasetFieldError",
    "EmptyDatasetError",
    "TokenizerMismatchError",
    "did_you_mean",
]


class TextEnvsError(ValueError):
    """Base class of every error raised by text-envs (a ``ValueError``, so generic handlers still catch it)."""


class UnknownNameError(TextEnvsError, KeyError):
    """A name (env, data set, reward, algorithm...) that is not registered."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class DatasetLoadError(TextEnvsError):
    """A data set that could not be loaded (offline hub, missing file, unreadable format)."""


class DatasetFieldError(TextEnvsError, KeyError):
    """A data set row that lacks the named field."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class EmptyDatasetError(TextEnvsError):
    """A data set with no usable (non-empty) example."""


class TokenizerMismatchError(TextEnvsError):
    """A tokenizer whose vocabulary or special ids do not fit the action space or the model."""


def did_you_mean(name: str, choices: Iterable[str], n: int = 3) -> str:
    """Return ``" Did you mean 'x'?"`` for the closest valid names, or ``""`` when none is close."""
    choices = list(choices)
    close = difflib.get_close_matches(str(name), choices, n=n, cutoff=0.5)
    if not close:
        return ""
    return " Did you mean " + " or ".join(repr(c) for c in close) + "?"


def unknown_name(kind: str, name: str, choices: Iterable[str]) -> UnknownNameError:
    """Build the standard error for an unknown ``kind`` name, listing the valid choices."""
    choices = sorted(choices)
    return UnknownNameError(
        f"Unknown {kind} {name!r}.{did_you_mean(name, choices)} Valid {kind}s: {', '.join(choices)}."
    )
