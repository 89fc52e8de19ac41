"""The reward interface, input/output validation, the registry and ``make_reward``.

A reward scores a *batch*: ``reward(predictions, references, prompts=None) -> list[float]`` with one float
per prediction. ``references[i]`` is the list of reference texts of prediction ``i`` (one or more); a bare
string is accepted as a single reference. The env calls ``reward.compute([text], [refs], [prompt])`` once
per finished episode, so everything on that path (validation included) is a few microseconds.

Nothing here imports torch, transformers or datasets.
"""

from __future__ import annotations

import inspect
import math
import re
import threading
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Union

from text_envs.errors import TextEnvsError, unknown_name

__all__ = [
    "RewardError",
    "Reward",
    "CallableReward",
    "CombinedReward",
    "RewardSpec",
    "make_reward",
    "list_rewards",
    "register_reward",
    "validate_inputs",
]


class RewardError(TextEnvsError):
    """Bad input to a reward (lengths, ``None`` texts, empty references) or a bad reward output (NaN, inf)."""


def _short(text: Any, n: int = 60) -> str:
    text = repr(text)
    return text if len(text) <= n else text[: n - 3] + "..."


def validate_inputs(
    predictions: Sequence[str],
    references: Sequence[Sequence[str] | str],
    prompts: Sequence[str] | None = None,
) -> tuple[list[str], list[list[str]], list[str] | None]:
    """Check and normalise a reward batch; return ``(predictions, references, prompts)`` as lists.

    :param predictions: one generated text per example.
    :param references: for each example, a non-empty list of reference texts (a bare ``str`` counts as one).
    :param prompts: ``None``, or one prompt text per example.
    :raises RewardError: on mismatched lengths, ``None`` or non-string texts, or an empty reference list.
    """
    if isinstance(predictions, str):
        raise RewardError(
            f"Expected `predictions` to be a list of strings (one per example), got a single str "
            f"{_short(predictions)}. Wrap it: reward([text], [[reference]])."
        )
    if isinstance(references, str):
        raise RewardError(
            f"Expected `references` to be a list with one list of reference texts per prediction, got a single "
            f"str {_short(references)}. Wrap it: reward([text], [[reference]])."
        )
    predictions = list(predictions)
    references = list(references)
    n = len(predictions)
    if len(references) != n:
        raise RewardError(
            f"Expected one list of references per prediction, got {n} predictions and {len(references)} "
            f"reference lists. Pass references as [[ref_a1, ref_a2], [ref_b1], ...] aligned with predictions."
        )
    for i, p in enumerate(predictions):
        if type(p) is not str:
            if p is None:
                raise RewardError(f"Expected a str for predictions[{i}], got None. Use '' for an empty generation.")
            if not isinstance(p, str):
                raise RewardError(
                    f"Expected a str for predictions[{i}], got {type(p).__name__} {_short(p)}. "
                    "Decode token ids first (tokenizer.decode(ids, skip_special_tokens=True))."
                )
    refs_out: list[list[str]] = []
    for i, refs in enumerate(references):
        if type(refs) is str:
            refs_out.append([refs])
            continue
        if refs is None or isinstance(refs, (bytes, Mapping)) or not isinstance(refs, Sequence) and not hasattr(
            refs, "__iter__"
        ):
            raise RewardError(
                f"Expected references[{i}] to be a list of reference strings, got {type(refs).__name__} "
                f"{_short(refs)}."
            )
        refs = list(refs)
        if not refs:
            raise RewardError(
                f"Expected at least one reference for example {i}, got an empty list. Drop the example or "
                "give it a reference (a reference-free reward such as a learned reward ignores them, but the "
                "list must still be non-empty: use [''])."
            )
        for j, r in enumerate(refs):
            if type(r) is not str:
                raise RewardError(
                    f"Expected a str for references[{i}][{j}], got {type(r).__name__} {_short(r)}."
                    + (" Remove missing references instead of passing None." if r is None else "")
                )
        refs_out.append(refs)
    if prompts is not None:
        if isinstance(prompts, str):
            raise RewardError(f"Expected `prompts` to be a list of strings or None, got a single str {_short(prompts)}.")
        prompts = list(prompts)
        if len(prompts) != n:
            raise RewardError(f"Expected one prompt per prediction, got {n} predictions and {len(prompts)} prompts.")
        for i, p in enumerate(prompts):
            if not isinstance(p, str):
                raise RewardError(f"Expected a str for prompts[{i}], got {type(p).__name__} {_short(p)}.")
    return predictions, refs_out, prompts


def _check_outputs(name: str, values: Any, n: int, predictions: Sequence[str]) -> list[float]:
    """Turn a reward's output into ``list[float]`` of length ``n``, rejecting NaN/inf and wrong lengths."""
    try:
        values = list(values)
    except TypeError:
        raise RewardError(
            f"Reward {name!r} must return a sequence of {n} floats (one per prediction), got "
            f"{type(values).__name__} {_short(values)}."
        ) from None
    if len(values) != n:
        raise RewardError(f"Reward {name!r} returned {len(values)} values for {n} predictions; expected one per prediction.")
    out = []
    for i, v in enumerate(values):
        try:
            f = float(v)
        except (TypeError, ValueError):
            raise RewardError(
                f"Reward {name!r} returned a non-number {_short(v)} for example {i} "
                f"(prediction {_short(predictions[i])}); expected a float."
            ) from None
        if not math.isfinite(f):
            raise RewardError(
                f"Reward {name!r} returned {f} for example {i} (prediction {_short(predictions[i])}); expected a "
                "finite float. A NaN/inf reward would silently corrupt the rollout and the value targets."
            )
        out.append(f)
    return out


class Reward:
    """Base class of every reward: scores a batch of predictions against their references.

    Subclasses implement :meth:`_compute`, which receives validated lists and returns either
    ``list[float]`` (the total) or a ``dict`` ``{component name: list[float]}`` containing ``self.name``.

    Attributes:
        name: the registry name (``"rouge-l"``) or, for a combination, ``"0.7*rouge-l+0.3*meteor"``.
        is_penalty: ``True`` for shaping penalties (values <= 0, combined with positive weights).
        allow_negative_weight: whether a combination may give this reward a negative weight. ``False`` for
            metrics and penalties (a negative weight would reward worse text); ``True`` for user callables,
            whose sign convention is theirs (e.g. a cost to subtract).
        needs_prompts: ``True`` when the reward uses ``prompts`` (learned rewards with the prompt).
        batched_only: ``True`` for expensive rewards (model-based) that should be scored in the main process by
            :class:`text_envs.rewards.BatchedRewardWrapper` rather than inside the env.
    """

    name: str = "reward"
    is_penalty: bool = False
    allow_negative_weight: bool = False
    needs_prompts: bool = False
    batched_only: bool = False

    # ------------------------------------------------------------------ public API
    def __call__(
        self,
        predictions: Sequence[str],
        references: Sequence[Sequence[str] | str],
        prompts: Sequence[str] | None = None,
    ) -> list[float]:
        """Score a batch; return one float per prediction (the total, ``compute(...)[self.name]``).

        :param predictions: generated texts.
        :param references: one non-empty list of reference texts per prediction.
        :param prompts: optional prompt texts, one per prediction.
        """
        return self.compute(predictions, references, prompts)[self.name]

    def compute(
        self,
        predictions: Sequence[str],
        references: Sequence[Sequence[str] | str],
        prompts: Sequence[str] | None = None,
    ) -> dict[str, list[float]]:
        """Score a batch and return every component: ``{name: list[float]}``, always containing ``self.name``.

        :param predictions: generated texts.
        :param references: one non-empty list of reference texts per prediction.
        :param prompts: optional prompt texts, one per prediction.
        :raises RewardError: on bad inputs, or when the reward produced NaN/inf or the wrong number of values.
        """
        predictions, references, prompts = validate_inputs(predictions, references, prompts)
        return self._compute_validated(predictions, references, prompts)

    def for_language(self, language: str | None) -> Reward:
        """Return a copy configured for texts in ``language`` (ISO code, e.g. ``"zh"``) unless the user already
        chose a tokenizer explicitly. The base implementation returns ``self`` (language-independent)."""
        return self

    # ------------------------------------------------------------------ for subclasses
    def _compute(
        self, predictions: list[str], references: list[list[str]], prompts: list[str] | None
    ) -> list[float] | dict[str, list[float]]:
        raise NotImplementedError

    def _compute_validated(
        self, predictions: list[str], references: list[list[str]], prompts: list[str] | None
    ) -> dict[str, list[float]]:
        n = len(predictions)
        if n == 0:
            return {self.name: []}
        out = self._compute(predictions, references, prompts)
        if not isinstance(out, dict):
            return {self.name: _check_outputs(self.name, out, n, predictions)}
        if self.name not in out:
            raise RewardError(f"Reward {self.name!r}.compute() must contain its own name; got keys {sorted(out)}.")
        return {k: _check_outputs(k, v, n, predictions) for k, v in out.items()}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


# ---------------------------------------------------------------------------------------------- callables
class CallableReward(Reward):
    """Wrap a Python callable as a :class:`Reward` with validated outputs.

    The callable is called as ``fn(predictions, references, prompts)`` (or ``fn(predictions, references)`` when
    it takes two positional parameters) and must return one finite float per prediction. With
    ``per_example=True`` it is called as ``fn(prediction, references_of_that_prediction) -> float`` instead.
    If it raises, the error names the first failing example.

    :param fn: the scoring function.
    :param name: registry-style name; defaults to the function's ``__name__``.
    :param per_example: call ``fn`` once per example rather than once per batch.
    """

    allow_negative_weight = True

    def __init__(self, fn: Callable[..., Any], name: str | None = None, per_example: bool = False) -> None:
        if not callable(fn):
            raise RewardError(f"Expected a callable reward, got {type(fn).__name__} {_short(fn)}.")
        self.fn = fn
        self.name = name or getattr(fn, "__name__", None) or type(fn).__name__
        if self.name == "<lambda>":
            self.name = "lambda"
        self.per_example = per_example
        self._pass_prompts = self._accepts_prompts(fn, per_example)
        self.needs_prompts = self._pass_prompts

    @staticmethod
    def _accepts_prompts(fn: Callable[..., Any], per_example: bool) -> bool:
        try:
            params = inspect.signature(fn).parameters.values()
        except (TypeError, ValueError):
            return not per_example
        positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        if any(p.kind == p.VAR_POSITIONAL for p in params):
            return True
        return len(positional) >= 3

    def _call(self, predictions, references, prompts):
        if self.per_example:
            if self._pass_prompts:
                return [self.fn(p, r, q) for p, r, q in zip(predictions, references, prompts or [None] * len(predictions))]
            return [self.fn(p, r) for p, r in zip(predictions, references)]
        if self._pass_prompts:
            return self.fn(predictions, references, prompts)
        return self.fn(predictions, references)

    def _compute(self, predictions, references, prompts):
        try:
            return self._call(predictions, references, prompts)
        except Exception as exc:  # find and name the failing example
            bad = 0
            if len(predictions) > 1:
                for i in range(len(predictions)):
                    try:
                        one_prompt = None if prompts is None else prompts[i : i + 1]
                        self._call(predictions[i : i + 1], references[i : i + 1], one_prompt)
                    except Exception:
                        bad = i
                        break
            raise RewardError(
                f"Reward callable {self.name!r} raised {type(exc).__name__}: {exc} on example {bad} "
                f"(prediction {_short(predictions[bad])}, references {_short(references[bad])}). "
                "Fix the callable; it must accept (predictions, references[, prompts]) and return one float each."
            ) from exc


# ---------------------------------------------------------------------------------------------- combinations
def _fmt_weight(w: float) -> str:
    return f"{w:g}".replace("e+", "e")  # no '+' inside a weight: '+' separates terms


class CombinedReward(Reward):
    """A weighted sum of rewards: ``total = sum_k w_k * r_k``.

    ``compute`` returns each component under its own name plus the total under ``self.name``
    (``"0.7*rouge-l+0.3*meteor"``).

    :param weights: ``{spec: weight}``; a spec is a name, a :class:`Reward` or a callable.
    :param normalize: divide the weights by their sum (so ``{"a": 7, "b": 3}`` means 0.7/0.3).
    :raises RewardError: for non-finite weights, negative weights on metrics or penalties (penalties such as
        ``"length-penalty"`` are <= 0 by themselves and take positive weights; only callables may take negative
        weights), or weights summing to <= 0.
    """

    def __init__(self, weights: Mapping[Any, float], normalize: bool = False) -> None:
        if not weights:
            raise RewardError("Expected at least one reward in a combination, got an empty mapping.")
        items: list[tuple[Reward, float]] = []
        for spec, w in weights.items():
            if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(float(w)):
                raise RewardError(
                    f"Expected a finite number as the weight of {_short(spec)}, got {_short(w)}. "
                    'Use {"rouge-l": 0.7, "meteor": 0.3}; put options in the reward: make_reward("bleu", tokenize="zh").'
                )
            reward = make_reward(spec)
            w = float(w)
            if w < 0 and not reward.allow_negative_weight:
                kind = "penalty" if reward.is_penalty else "quality metric"
                raise RewardError(
                    f"Expected a non-negative weight for the {kind} {reward.name!r}, got {w}. A negative weight "
                    "would reward worse text; penalties (e.g. 'length-penalty', 'repetition-penalty') already "
                    "return values <= 0 and take positive weights. Only callables may take negative weights."
                )
            items.append((reward, w))
        total = sum(w for _, w in items)
        if total <= 0:
            raise RewardError(
                f"Expected reward weights that sum to a positive number, got {[w for _, w in items]} (sum {total}). "
                "Give at least one metric a positive weight."
            )
        if not normalize and 99.0 <= total <= 101.0 and len(items) > 1:
            warnings.warn(
                f"Reward weights sum to {total:g}: did you mean percentages? The total reward is {total:g} times the "
                "scale of a single metric; pass normalize=True (or weights that sum to 1).",
                UserWarning,
                stacklevel=3,
            )
        if normalize:
            items = [(r, w / total) for r, w in items]
        names = [r.name for r, _ in items]
        if len(set(names)) != len(names):
            raise RewardError(f"Expected distinct rewards in a combination, got the names {names}.")
        self.components = items
        self.name = "+".join(f"{_fmt_weight(w)}*{r.name}" for r, w in items)
        self.needs_prompts = any(r.needs_prompts for r, _ in items)
        self.batched_only = any(r.batched_only for r, _ in items)

    def for_language(self, language: str | None) -> Reward:
        new = object.__new__(CombinedReward)
        new.__dict__.update(self.__dict__)
        new.components = [(r.for_language(language), w) for r, w in self.components]
        return new

    def _compute(self, predictions, references, prompts):
        out: dict[str, list[float]] = {}
        total = [0.0] * len(predictions)
        for reward, w in self.components:
            parts = reward._compute_validated(predictions, references, prompts)
            for k, v in parts.items():
                out.setdefault(k, v)
            total = [t + w * v for t, v in zip(total, parts[reward.name])]
        out[self.name] = total
        return out


# ---------------------------------------------------------------------------------------------- registry
RewardSpec = Union[str, Mapping[str, Any], Reward, Callable[..., Any]]
_REGISTRY: dict[str, Callable[..., Reward]] = {}
_LOCK = threading.Lock()
_TERM = re.compile(r"^\s*(?:([-+]?\d*\.?\d+(?:[eE][-+]?\d+)?)\s*\*\s*)?([A-Za-z][A-Za-z0-9_.:/+\-]*)\s*$")
_SPLIT = re.compile(r"\+(?=\s*[-\d.A-Za-z])")  # a '+' that starts a new term ("chrf++" keeps its pluses)


def register_reward(name: str, factory: Callable[..., Reward], overwrite: bool = False) -> None:
    """Register ``factory`` (called with the user's options, returns a :class:`Reward`) under ``name``.

    :param name: the name users pass to ``make_reward`` / ``gym.make(..., reward=name)``; starts with a letter, no ``*``.
    :param factory: a class or function ``factory(**options) -> Reward``.
    :param overwrite: replace an existing registration instead of raising.
    """
    if not isinstance(name, str) or not name or "*" in name or name != name.strip() or not name[0].isalpha():
        raise RewardError(
            f"Expected a reward name that starts with a letter, without '*' or surrounding spaces, got {name!r}."
        )
    if not callable(factory):
        raise RewardError(f"Expected a callable factory for reward {name!r}, got {type(factory).__name__}.")
    with _LOCK:
        if name in _REGISTRY and not overwrite and _REGISTRY[name] is not factory:
            raise RewardError(f"Reward {name!r} is already registered; pass overwrite=True to replace it.")
        _REGISTRY[name] = factory


def list_rewards() -> list[str]:
    """Return the registered reward names, sorted."""
    return sorted(_REGISTRY)


def _from_name(name: str, options: dict[str, Any]) -> Reward:
    key = name.strip()
    factory = _REGISTRY.get(key) or _REGISTRY.get(key.lower())
    if factory is None:
        raise unknown_name("reward", name, _REGISTRY)
    try:
        reward = factory(**options)
    except TypeError as exc:
        raise RewardError(f"Bad options {sorted(options)} for reward {key!r}: {exc}. See help(make_reward).") from exc
    if not isinstance(reward, Reward):
        raise RewardError(f"The factory registered for {key!r} returned {type(reward).__name__}, expected a Reward.")
    return reward


def _parse_expression(spec: str) -> dict[str, float]:
    weights: dict[str, float] = {}
    for term in _SPLIT.split(spec):
        m = _TERM.match(term)
        if not m:
            raise RewardError(
                f"Could not parse the reward expression {spec!r} at {term!r}; expected terms 'weight*name' joined "
                "by '+', e.g. '0.7*rouge-l+0.3*meteor'."
            )
        weights[m.group(2)] = float(m.group(1)) if m.group(1) else 1.0
    return weights


def make_reward(spec: RewardSpec, *, language: str | None = None, **options: Any) -> Reward:
    """Build a :class:`Reward` from a name, a weighted combination, an object or a callable.

    Accepted specs:

    * a registered name: ``make_reward("rouge-l")``; options go to the reward:
      ``make_reward("rouge-l", use_stemmer=True, tokenizer="char")``, ``make_reward("bleu", tokenize="zh")``;
    * a dict with a ``"name"`` key, the same with the options inline: ``{"name": "bleu", "tokenize": "zh"}``;
    * a ``{spec: weight}`` dict, a weighted sum: ``{"rouge-l": 0.7, "meteor": 0.3}`` (keys may also be
      :class:`Reward` objects), or the expression form ``"0.7*rouge-l+0.3*meteor"`` (the ``name`` of a
      combination, so ``make_reward(r.name)`` rebuilds ``r``);
    * a :class:`Reward` instance, returned as is;
    * any callable ``fn(predictions, references[, prompts]) -> list[float]``, wrapped in :class:`CallableReward`.

    :param spec: see above.
    :param language: ISO code of the texts being scored (``"zh"``, ``"en"``); lexical rewards whose tokenizer
        was not set explicitly pick the language's tokenizer (sacrebleu ``zh``, character ROUGE/METEOR for CJK).
    :param options: options of a named reward (not allowed with other spec kinds).
    :raises UnknownNameError: for an unknown name, with the closest valid names.
    :raises RewardError: for bad options, weights or spec types.
    """
    if isinstance(spec, Reward):
        if options:
            raise RewardError(f"Options {sorted(options)} cannot be applied to an existing Reward object {spec!r}.")
        reward = spec
    elif isinstance(spec, str):
        if spec.strip() not in _REGISTRY and ("+" in spec or "*" in spec):
            if options:
                raise RewardError("Options apply to a single named reward; build the components with make_reward first.")
            reward = CombinedReward(_parse_expression(spec))
        else:
            reward = _from_name(spec, options)
    elif isinstance(spec, Mapping):
        if "name" in spec:
            opts = {k: v for k, v in spec.items() if k != "name"}
            reward = _from_name(str(spec["name"]), {**opts, **options})
        else:
            if options:
                raise RewardError("Options apply to a single named reward; build the components with make_reward first.")
            reward = CombinedReward(spec)
    elif callable(spec):
        reward = CallableReward(spec, **options)
    else:
        raise RewardError(
            f"Expected a reward name, a {{name: weight}} dict, a Reward or a callable, got {type(spec).__name__} "
            f"{_short(spec)}. Valid names: {', '.join(list_rewards())}."
        )
    if language is not None:
        reward = reward.for_language(language)
    return reward
