"""Where a task's examples come from: the embedded generators, a `datasets.Dataset`, a hub name or a local file.

Every source is indexable by position and small to pickle: embedded rows are recomputed from their index,
`datasets` rows stay in memory-mapped Arrow files, so `SubprocVecEnv` workers do not each hold a copy of
the data set. A source only yields raw rows; the task turns a row into an :class:`Example`.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from text_envs.errors import DatasetFieldError, DatasetLoadError, EmptyDatasetError, unknown_name

__all__ = [
    "Example", "HubDatasetSpec", "EmbeddedRows", "ExampleSource", "SplitFile", "get_field", "load_rows",
    "is_local_path", "LOCAL_SUFFIXES", "SPLITS",
]

LOCAL_SUFFIXES = {".json": "json", ".jsonl": "json", ".csv": "csv"}
SPLITS = ("train", "validation", "test")


def is_local_path(text: str | os.PathLike) -> bool:
    """Whether a ``dataset`` string names a local file (a known suffix, a path separator, or an existing path)
    rather than a registered hub name."""
    text = str(text)
    return Path(text).suffix.lower() in LOCAL_SUFFIXES or os.sep in text or Path(text).exists()


def _round_half_up(x: float) -> int:
    return int(math.floor(x + 0.5))


@dataclass(frozen=True)
class SplitFile:
    """One local data file split into ``train`` / ``validation`` / ``test`` by a seeded rule, so that a model
    is never evaluated on the rows it was trained on.

    The rule: the file's ``n`` rows (in file order, blank lines not counted) are shuffled by
    ``numpy.random.default_rng(seed).permutation(n)``; the first ``round(test * n)`` of that order (at least
    1) are the test split, the next ``round(validation * n)`` (at least 1) the validation split, and the rest
    the train split. Each split keeps the file's order. The assignment depends only on ``n`` and ``seed``
    (adding rows to the file moves rows between splits). Fewer than 3 rows cannot fill three splits:
    :class:`~text_envs.errors.EmptyDatasetError`.

    Pass it as ``dataset=SplitFile("rows.jsonl")``; ``SplitFile(...).assignment(n)`` says which rows went where.

    :param path: a local ``.json`` / ``.jsonl`` / ``.csv`` file.
    :param seed: seeds the shuffle (0 by default: every run on the same file gets the same split).
    :param validation: share of rows in the validation split (0 < share; at least one row).
    :param test: share of rows in the test split (0 < share; at least one row).
    """

    path: str
    seed: int = 0
    validation: float = 0.1
    test: float = 0.1

    def __post_init__(self) -> None:
        for name in ("validation", "test"):
            share = getattr(self, name)
            if not 0.0 < share < 1.0:
                raise DatasetLoadError(f"SplitFile {name}= must be a share strictly between 0 and 1, got {share!r}.")
        if self.validation + self.test >= 1.0:
            raise DatasetLoadError(
                f"SplitFile validation + test shares must leave rows for training, got "
                f"{self.validation} + {self.test} >= 1."
            )

    def assignment(self, n_rows: int) -> dict[str, np.ndarray]:
        """``{"train": rows, "validation": rows, "test": rows}``: 0-based row positions of each split, sorted."""
        n_test = max(1, _round_half_up(self.test * n_rows))
        n_val = max(1, _round_half_up(self.validation * n_rows))
        n_train = n_rows - n_test - n_val
        if n_train < 1:
            raise EmptyDatasetError(
                f"{self.path!r} has {n_rows} row(s): too few to split into train, validation and test (at least "
                f"one row each, {n_test} + {n_val} held out). Add rows, or give separate files for the splits "
                "(dataset={'train': ..., 'test': ...}; on the command line --train-file/--test-file)."
            )
        order = np.random.default_rng(self.seed).permutation(n_rows)
        return {
            "test": np.sort(order[:n_test]),
            "validation": np.sort(order[n_test : n_test + n_val]),
            "train": np.sort(order[n_test + n_val :]),
        }

    def split_rows(self) -> tuple[int, dict[str, np.ndarray]]:
        """``(number of rows in the file, assignment)``: reads the file (once per version, see ``_load_local``)."""
        n_rows = len(_load_local(Path(self.path).expanduser(), None))
        return n_rows, self.assignment(n_rows)

    def __str__(self) -> str:
        return f"{self.path} (seeded split, seed {self.seed})"


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
    :param hub_splits: ``(our split, the hub's split)`` pairs for sets that lack one of ours, e.g. WMT19's two
        halves of its one held-out set: ``(("validation", "validation[:50%]"), ("test", "validation[50%:]"))``
        (``datasets`` slice syntax: disjoint halves, never the same rows twice); None: the same names.
    """

    path: str
    prompt_field: str
    reference_field: str | None
    config: str | None = None
    default_langs: tuple[str, str] | None = None
    hub_splits: tuple[tuple[str, str], ...] | None = None

    def hub_split(self, split: str) -> str:
        """The hub's name (or slice) for our ``split``."""
        return dict(self.hub_splits or ()).get(split, split)


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


def _root_cause(exc: BaseException) -> str:
    """The innermost exception's message (``datasets`` wraps the parser's reason in a generic one)."""
    seen = set()
    while (exc.__cause__ or exc.__context__) is not None and id(exc) not in seen:
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


def _locate_bad_row(path: Path, kind: str) -> str | None:
    """Find the first row of a local file that does not parse: ``"line N: reason"``, or None when every row
    parses (the failure was elsewhere)."""
    data = path.read_bytes()
    if not data.strip():
        return "the file is empty: expected at least one row"
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        return f"line {line}, column {column}: byte 0x{data[exc.start]:02x} is not UTF-8 (save the file as UTF-8)"
    if kind == "csv":
        import csv
        import io

        rows = csv.reader(io.StringIO(text))
        header = next(rows, None)
        for row in rows:
            if row and header is not None and len(row) != len(header):
                return (f"line {rows.line_num}: {len(row)} fields where the header line has {len(header)} "
                        f"({', '.join(header)})")
        return None
    if text.lstrip().startswith("["):  # one JSON list of rows
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as exc:
            return f"line {exc.lineno}: {exc.msg} (column {exc.colno}; the JSON parser's reason)"
        bad = next((i for i, r in enumerate(rows) if not isinstance(r, dict)), None)
        if bad is not None:
            return f"element {bad} of the list is a {type(rows[bad]).__name__}: expected a JSON object (a row)"
        return None
    # JSON lines end at "\n" only: str.splitlines() would also break inside strings at U+0085, U+2028, \x0c...
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            return f"line {number}: {exc.msg} (column {exc.colno}; the JSON parser's reason)"
        if not isinstance(row, dict):
            return f"line {number} is a JSON {type(row).__name__}: expected a JSON object (one row per line)"
    return None


_UTF8_CHECKED: set[tuple[str, int, int]] = set()  # (path, size, mtime_ns) of files already found to be UTF-8


def _check_utf8(path: Path) -> None:
    """Refuse a file that is not UTF-8 with its line and column (pyarrow reads such bytes without a word and the
    row fails later, deep inside ``datasets``). Read in 1 MB chunks; each file version is checked once."""
    import codecs

    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key in _UTF8_CHECKED:
        return
    decoder = codecs.getincrementaldecoder("utf-8")()
    lines_before = 0
    with open(path, "rb") as f:
        while True:
            chunk = f.read(1 << 20)
            try:
                decoder.decode(chunk, final=not chunk)
            except UnicodeDecodeError as exc:
                # exc.object: the bytes the decoder held back from the last chunk (part of one character, no
                # newline) followed by this chunk
                data, start = exc.object, exc.start
                line = lines_before + data[:start].count(b"\n") + 1
                raise DatasetLoadError(
                    f"Could not read {str(path)!r}: line {line}: byte 0x{data[start]:02x} is not UTF-8; save the "
                    "file as UTF-8."
                ) from None
            if not chunk:
                break
            lines_before += chunk.count(b"\n")
    _UTF8_CHECKED.add(key)


def _load_local(path: Path, split: str | None) -> Any:
    """Every row of a local file (``split`` only feeds the warning: a single file has no splits). Each version
    of a file (path, size, modification time) is read once per process."""
    suffix = path.suffix.lower()
    if suffix not in LOCAL_SUFFIXES:
        raise DatasetLoadError(
            f"Unsupported data file {str(path)!r}: expected one of {sorted(LOCAL_SUFFIXES)} "
            "(JSON lines, a JSON list of rows, or CSV with a header)."
        )
    if not path.is_file():
        raise DatasetLoadError(f"Data file {str(path)!r} does not exist.")
    kind = LOCAL_SUFFIXES[suffix]
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    rows = _LOCAL_CACHE.get(key)
    if rows is None:
        rows = _read_local(path, kind)
        while len(_LOCAL_CACHE) >= 4:  # a few files (memory-mapped Arrow tables): the envs of one run share them
            _LOCAL_CACHE.pop(next(iter(_LOCAL_CACHE)))
        _LOCAL_CACHE[key] = rows
    if split in ("validation", "test"):
        warnings.warn(
            f"dataset={str(path)!r} is a single file, so its {split!r} split is every row of it, the same rows "
            "as its 'train' split. For held-out rows pass dataset=SplitFile(path) (text_envs.data.sources: a "
            "seeded train/validation/test split) or dataset={'train': ..., 'test': ...}.",
            stacklevel=2,
        )
    return rows


_LOCAL_CACHE: dict[tuple[str, int, int], Any] = {}


def _read_local(path: Path, kind: str) -> Any:
    import datasets

    _check_utf8(path)
    datasets.disable_progress_bars()
    import logging

    quiet = logging.getLogger(f"datasets.packaged_modules.{kind}.{kind}")  # it logs the error we re-raise below
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)
    try:
        rows = datasets.load_dataset(kind, data_files=str(path), split="train")
    except Exception as exc:  # malformed JSON / CSV: name the file, the line and the parser's reason
        where = _locate_bad_row(path, kind)
        reason = where if where is not None else _root_cause(exc)
        raise DatasetLoadError(f"Could not read {str(path)!r} as {'JSON lines' if kind == 'json' else kind}: "
                               f"{reason}.") from exc
    finally:
        quiet.setLevel(level)
    return rows


def _load_split_file(spec: SplitFile, split: str) -> tuple[Any, str]:
    if split not in SPLITS:
        raise unknown_name("split", split, SPLITS)
    rows = _load_local(Path(spec.path).expanduser(), None)
    positions = spec.assignment(len(rows))
    described = f"file {spec.path!r} ({split}: {len(positions[split])} of {len(rows)} rows, seeded split)"
    return rows.select(positions[split]), described


def _load_hub(name: str, spec: HubDatasetSpec, config: str | None, split: str) -> Any:
    import datasets

    datasets.disable_progress_bars()
    # No hub here means fail in seconds, not after a network time-out: look in the local cache first.
    os.environ.setdefault("HF_HUB_ETAG_TIMEOUT", "5")
    os.environ.setdefault("HF_HUB_DOWNLOAD_TIMEOUT", "10")
    split = spec.hub_split(split)
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

    :param dataset: a registered hub name, a ``datasets.Dataset`` / ``DatasetDict``, a local file path (every
        row, whatever ``split``), a :class:`SplitFile` (a seeded train/validation/test split of one file), a
        ``{split: any of these}`` mapping (e.g. ``{"train": "a.jsonl", "test": "b.jsonl"}``), or a list of dict
        rows.
    :param split: the split to take from a hub set or a ``DatasetDict``.
    :param hub_specs: the task's registered hub names.
    :param hub_config: the hub configuration, when the spec's default does not apply.
    :return: ``(rows, spec or None, description)``.
    """
    if isinstance(dataset, SplitFile):
        rows, name = _load_split_file(dataset, split)
        return rows, None, name
    if isinstance(dataset, Mapping):
        if split not in dataset:
            raise DatasetLoadError(
                f"dataset= maps the splits {sorted(dataset)} to data, but this env asked for the {split!r} split: "
                f"add a {split!r} entry (or evaluate on one of {sorted(dataset)})."
            )
        if isinstance(dataset[split], Mapping):
            raise DatasetLoadError(f"dataset[{split!r}] is itself a mapping: expected a file, name or Dataset.")
        part = dataset[split]
        if isinstance(part, (str, os.PathLike)) and is_local_path(part):  # a file given for this split: all of it
            return _load_local(Path(str(part)).expanduser(), None), None, f"file {str(part)!r} (as {split!r})"
        rows, spec, name = load_rows(part, split, hub_specs, hub_config)
        return rows, spec, f"{name} (as {split!r})"
    if isinstance(dataset, (str, os.PathLike)):
        text = str(dataset)
        if is_local_path(text):
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
        f".json/.jsonl/.csv path, a SplitFile, a {{split: data}} mapping, a datasets.Dataset or a list of dict "
        f"rows; got {type(dataset).__name__}."
    )
