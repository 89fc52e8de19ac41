"""Where a task's examples come from: the embedded generators, a `datasets.Dataset`, a hub name or a local file.

Every source is indexable by position and small to pickle: embedded rows are recomputed from their index,
`datasets` rows stay in memory-mapped Arrow files, so `SubprocVecEnv` workers do not each hold a copy of
the data set. A source only yields raw rows; the task turns a row into an :class:`Example`.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from text_envs.errors import DatasetFieldError, DatasetLoadError, EmptyDatasetError, unknown_name

__all__ = ["Example", "HubDatasetSpec", "EmbeddedRows", "ExampleSource", "get_field", "load_rows", "LOCAL_SUFFIXES"]

LOCAL_SUFFIXES = {".json": "json", ".jsonl": "json", ".csv": "csv"}


@dataclass(frozen=True)
class Example:
    """One episode's material: the prompt text (already formatted by the task) and its references."""

    prompt: str
    references: tuple[str, ...]


@dataclass(frozen=True)
class HubDatasetSpec:
    """How a named Hugging Face hub data set maps onto a task.

    :param path: the hub repository, passed to ``datasets.load_dataset``.
    :param prompt_field: dotted name of the source text (``{src}`` is replaced by the source language).
    :param reference_field: dotted name of the reference text or list of texts (``{tgt}``: target language).
    :param config: the hub configuration (``{src}``/``{tgt}`` are replaced), or None.
    :param default_langs: (source, target) language pair used when the user names none.
    """

    path: str
    prompt_field: str
    reference_field: str | None
    config: str | None = None
    default_langs: tuple[str, str] | None = None


class EmbeddedRows:
    """Rows of a procedural generator, computed on demand from ``(split, index, difficulty)``."""

    def __init__(self, row_fn: Callable[[str, int, int], dict], split: str, difficulty: int, size: int) -> None:
        self.row_fn, self.split, self.difficulty, self.size = row_fn, split, difficulty, size

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> dict:
        return self.row_fn(self.split, int(index), self.difficulty)


def get_field(row: Mapping[str, Any], dotted: str) -> Any:
    """Read ``row["a"]["b"]`` for ``dotted == "a.b"``; a missing field raises :class:`DatasetFieldError`
    listing the fields the row has."""
    value: Any = row
    for i, part in enumerate(dotted.split(".")):
        if not isinstance(value, Mapping) or part not in value:
            where = ".".join(dotted.split(".")[:i]) or "the row"
            have = sorted(value.keys()) if isinstance(value, Mapping) else type(value).__name__
            raise DatasetFieldError(
                f"Field {dotted!r} not found: {where} has fields {have}. "
                f"Pass prompt_field=... and reference_field=... naming the columns of your data "
                f"(dotted names such as 'translation.en' reach into nested rows)."
            )
        value = value[part]
    return value


def _is_blank(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, str):
        return not value.strip()
    if isinstance(value, Sequence):
        return len(value) == 0 or all(_is_blank(v) for v in value)
    return False


class ExampleSource:
    """Indexable examples of one split: raw rows plus the task's ``row -> Example`` formatter.

    Rows whose prompt or references are empty or whitespace are skipped (counted in a warning); a
    source left with no example raises :class:`EmptyDatasetError`.

    :param rows: anything with ``__len__`` and integer ``__getitem__`` returning a mapping (an
        :class:`EmbeddedRows`, a ``datasets.Dataset``, a list of dicts).
    :param to_example: the task's formatter, from a row to an :class:`Example`.
    :param required_fields: dotted names checked on the first row and used to find empty rows.
    :param name: a short description for messages and ``repr``.
    :param scan_for_empty: False for sources known to have no empty rows (the embedded generators).
    """

    def __init__(
        self,
        rows: Any,
        to_example: Callable[[Mapping[str, Any]], Example],
        required_fields: Sequence[str],
        name: str,
        scan_for_empty: bool = True,
    ) -> None:
        self.rows, self.to_example, self.name = rows, to_example, name
        n_rows = len(rows)
        if n_rows == 0:
            raise EmptyDatasetError(f"The data set {name} has no rows: expected at least one example.")
        for field in required_fields:  # fail early, with the fields the data does have
            get_field(rows[0], field)
        self._indices: np.ndarray | None = None  # None: every row is valid
        if scan_for_empty:
            valid = np.fromiter(
                (i for i in range(n_rows) if not any(_is_blank(get_field(rows[i], f)) for f in required_fields)),
                dtype=np.int64,
            )
            n_skipped = n_rows - len(valid)
            if len(valid) == 0:
                raise EmptyDatasetError(
                    f"Every one of the {n_rows} rows of {name} has an empty or whitespace-only "
                    f"{' or '.join(required_fields)}: no example to train on."
                )
            if n_skipped:
                warnings.warn(
                    f"Skipped {n_skipped} of {n_rows} rows of {name} whose {' or '.join(required_fields)} "
                    "is empty or whitespace-only.",
                    stacklevel=3,
                )
                self._indices = valid

    def __len__(self) -> int:
        return len(self.rows) if self._indices is None else len(self._indices)

    def __getitem__(self, index: int) -> Example:
        if not 0 <= index < len(self):
            raise IndexError(f"example index {index} out of range: this split has {len(self)} examples")
        row_index = index if self._indices is None else int(self._indices[index])
        return self.to_example(self.rows[row_index])

    def __repr__(self) -> str:
        return f"ExampleSource({self.name}, {len(self)} examples)"


def _load_local(path: Path, split: str) -> Any:
    import datasets

    suffix = path.suffix.lower()
    if suffix not in LOCAL_SUFFIXES:
        raise DatasetLoadError(
            f"Unsupported data file {str(path)!r}: expected one of {sorted(LOCAL_SUFFIXES)} "
            "(JSON lines, a JSON list of rows, or CSV with a header)."
        )
    if not path.is_file():
        raise DatasetLoadError(f"Data file {str(path)!r} does not exist.")
    datasets.disable_progress_bars()
    try:
        # A local file is one split: whatever `split` the env asked for, its rows are these.
        return datasets.load_dataset(LOCAL_SUFFIXES[suffix], data_files=str(path), split="train")
    except Exception as exc:  # malformed JSON / CSV
        raise DatasetLoadError(f"Could not read {str(path)!r} as {LOCAL_SUFFIXES[suffix]}: {exc}") from exc


def _load_hub(name: str, spec: HubDatasetSpec, config: str | None, split: str) -> Any:
    import datasets

    datasets.disable_progress_bars()
    # No hub here means fail in seconds, not after a network time-out: look in the local cache first.
    os.environ.setdefault("HF_HUB_ETAG_TIMEOUT", "5")
    os.environ.setdefault("HF_HUB_DOWNLOAD_TIMEOUT", "10")
    try:
        return datasets.load_dataset(spec.path, config, split=split)
    except Exception as exc:
        raise DatasetLoadError(
            f"Could not load the hub data set {name!r} ({spec.path}, config {config!r}, split {split!r}): "
            f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}\n"
            "Without access to the Hugging Face hub, pass a local file instead: "
            "dataset='path/to/rows.jsonl' (or .json / .csv) with prompt_field=... and reference_field=... "
            "naming its columns, or a datasets.Dataset object."
        ) from exc


def load_rows(
    dataset: Any,
    split: str,
    hub_specs: Mapping[str, HubDatasetSpec],
    hub_config: str | None = None,
) -> tuple[Any, HubDatasetSpec | None, str]:
    """Resolve a user's ``dataset`` argument into indexable rows.

    :param dataset: a registered hub name, a ``datasets.Dataset`` / ``DatasetDict``, a local file path, or
        a list of dict rows.
    :param split: the split to take from a hub set or a ``DatasetDict``.
    :param hub_specs: the task's registered hub names.
    :param hub_config: the hub configuration, when the spec's default does not apply.
    :return: ``(rows, spec or None, description)``.
    """
    if isinstance(dataset, (str, os.PathLike)):
        text = str(dataset)
        if Path(text).suffix.lower() in LOCAL_SUFFIXES or os.sep in text or Path(text).exists():
            return _load_local(Path(text).expanduser(), split), None, f"file {text!r}"
        if text not in hub_specs:
            raise unknown_name("dataset", text, list(hub_specs) + ["<local .json/.jsonl/.csv path>"])
        spec = hub_specs[text]
        return _load_hub(text, spec, hub_config, split), spec, f"hub data set {text!r} ({split})"
    if isinstance(dataset, list):
        return dataset, None, f"list of {len(dataset)} rows"
    try:  # a datasets.Dataset or DatasetDict, without importing datasets for the other cases
        import datasets
    except ImportError:  # pragma: no cover - datasets is a dependency
        datasets = None
    if datasets is not None and isinstance(dataset, datasets.DatasetDict):
        if split not in dataset:
            raise unknown_name("split", split, list(dataset))
        return dataset[split], None, f"DatasetDict[{split!r}]"
    if datasets is not None and isinstance(dataset, datasets.Dataset):
        return dataset, None, f"Dataset({dataset.num_rows} rows)"
    raise DatasetLoadError(
        f"Expected dataset to be a registered name ({', '.join(sorted(hub_specs))}), a local "
        f".json/.jsonl/.csv path, a datasets.Dataset or a list of dict rows; got {type(dataset).__name__}."
    )
