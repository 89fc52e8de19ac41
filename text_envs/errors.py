"""Error hierarchy of text-envs: every error says what was expected and how to fix it."""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Iterable, Mapping

__all__ = [
    "TextEnvsError",
    "UnknownNameError",
    "DatasetLoadError",
    "DatasetFieldError",
    "EmptyDatasetError",
    "TokenizerMismatchError",
    "UnknownKeywordError",
    "did_you_mean",
    "accepted_keywords",
    "check_keywords",
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


class UnknownKeywordError(TextEnvsError):
    """A keyword argument a constructor does not take (not a ``TypeError``: Gymnasium's ``make`` would append its own
    text to one)."""


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


def accepted_keywords(cls: type, skip: Iterable[str] = ()) -> list[str]:
    """The keyword arguments ``cls(...)`` accepts, read from the signatures: its ``__init__``'s named parameters,
    and, while an ``__init__`` passes ``**kwargs`` on, the keyword-only parameters of its parents' ``__init__``."""
    names: dict[str, None] = {}
    first = True
    for klass in cls.__mro__:
        init = vars(klass).get("__init__")
        if init is None:
            continue
        params = list(inspect.signature(init).parameters.values())[1:]  # without self
        kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY) if first else (
            inspect.Parameter.KEYWORD_ONLY,)
        names.update(dict.fromkeys(p.name for p in params if p.kind in kinds and p.name not in skip))
        first = False
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
            break
    return list(names)


def check_keywords(kwargs: Mapping[str, object], valid: Iterable[str], what: str,
                   elsewhere: Mapping[str, str] | None = None) -> None:
    """Refuse keyword arguments that are not in ``valid`` with :class:`UnknownKeywordError`: the closest valid
    name and the valid ones. ``elsewhere`` maps a keyword that belongs to another call to that call's name."""
    valid = list(valid)
    for name in kwargs:
        if name in valid:
            continue
        where = (elsewhere or {}).get(name)
        hint = f" {name!r} belongs to {where}." if where else did_you_mean(name, valid)
        raise UnknownKeywordError(f"{what} got an unknown keyword argument {name!r}.{hint} Valid keyword "
                                  f"arguments: {', '.join(sorted(valid))}.")
