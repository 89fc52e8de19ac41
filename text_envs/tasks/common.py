"""Pieces shared by the text tasks: the data argument, field mapping and prompt templates."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from text_envs.data.sources import EmbeddedRows, Example, ExampleSource, HubDatasetSpec, get_field, load_rows
from text_envs.errors import TextEnvsError, unknown_name

Template = str | Callable[..., str]


def render_template(template: Template, **fields: Any) -> str:
    """Fill a prompt template: a ``str.format`` string or a callable taking the same keywords."""
    if callable(template):
        return str(template(**fields))
    try:
        return template.format(**fields)
    except KeyError as exc:
        raise TextEnvsError(
            f"prompt_template {template!r} names the field {exc}, but this task fills only {sorted(fields)}."
        ) from None


def as_references(value: Any) -> tuple[str, ...]:
    """A reference column holds one text or a list of texts; keep the non-empty ones."""
    if isinstance(value, str):
        refs = (value,)
    elif isinstance(value, (list, tuple)):
        refs = tuple(str(v) for v in value if v is not None)
    else:
        raise TextEnvsError(f"Expected a reference text or a list of texts, got {type(value).__name__}: {value!r}.")
    return tuple(r for r in refs if r.strip())


def build_source(
    *,
    dataset: Any,
    split: str,
    embedded: Callable[[str, int, int], dict],
    embedded_sizes: Mapping[str, int],
    difficulty: int,
    hub_specs: Mapping[str, HubDatasetSpec],
    hub_config: Callable[[HubDatasetSpec], str | None],
    default_fields: tuple[str, str | None],
    prompt_field: str | None,
    reference_field: str | None,
    to_example: Callable[[Any, Any], Example],
) -> ExampleSource:
    """Resolve ``dataset`` into an :class:`ExampleSource` whose rows are turned into examples by ``to_example``.

    ``to_example(prompt_value, reference_value_or_None)`` receives the raw values of the two fields.
    """
    if dataset is None:
        if split not in embedded_sizes:
            raise unknown_name("split", split, embedded_sizes)
        if difficulty not in (1, 2, 3):
            raise TextEnvsError(f"difficulty must be 1, 2 or 3, got {difficulty!r}.")
        rows: Any = EmbeddedRows(embedded, split, difficulty, embedded_sizes[split])
        spec, name = None, f"embedded {split} split (difficulty {difficulty})"
        scan = False
    else:
        named = hub_specs.get(dataset) if isinstance(dataset, str) else None
        rows, spec, name = load_rows(dataset, split, hub_specs, hub_config(named) if named else None)
        scan = True
    p_field = prompt_field or (spec.prompt_field if spec else default_fields[0])
    r_field = reference_field or (spec.reference_field if spec else default_fields[1])
    required = [p_field] + ([r_field] if r_field else [])

    return ExampleSource(rows, _Formatter(p_field, r_field, to_example), required, name, scan_for_empty=scan)


class _Formatter:
    """Picklable ``row -> Example`` (a closure would not survive SubprocVecEnv's pickling on spawn)."""

    def __init__(self, prompt_field: str, reference_field: str | None, to_example: Callable[[Any, Any], Example]):
        self.prompt_field, self.reference_field, self.to_example = prompt_field, reference_field, to_example

    def __call__(self, row: Mapping[str, Any]) -> Example:
        ref = get_field(row, self.reference_field) if self.reference_field else None
        return self.to_example(get_field(row, self.prompt_field), ref)
