"""Run state as data: a tree of Python values written as JSON, NumPy arrays and torch tensors, never as a pickle.

:func:`encode` turns a tree of plain values (``None``, bools, ints, floats, complex numbers, strings, bytes, lists,
tuples, sets, deques, dicts, NumPy scalars and arrays, ``numpy.random.Generator`` objects and torch tensors) into
three parts: a JSON-compatible tree (``state.json``), a dict of NumPy arrays (``arrays.npz``, read back with
``allow_pickle=False``) and a dict of torch tensors (``tensors.safetensors``). :func:`decode` rebuilds the tree from
the three parts. Reading creates only the types listed above: a file cannot name a class to import or a function
to call, which is what makes it safe to read a run folder someone else wrote (a pickle can run any code).

In the JSON tree every JSON object is a tagged node ``{"$": tag, ...}``; lists are lists, and ``None``, bools,
ints, floats (``NaN`` and infinities as JSON's extended literals) and strings are themselves.
"""

from __future__ import annotations

import base64
import collections
import io
import json
import sys
from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["StateCodecError", "encode", "decode", "is_encodable", "dumps", "loads"]

#: the bit generators a ``numpy.random.Generator`` may be rebuilt with (by name, from this list only)
BIT_GENERATORS = ("PCG64", "PCG64DXSM", "MT19937", "Philox", "SFC64")
#: ``defaultdict`` factories that can be stored (by name)
DEFAULT_FACTORIES: dict[str, Callable[[], Any]] = {"list": list, "dict": dict, "int": int, "float": float,
                                                   "set": set}


class StateCodecError(ValueError):
    """A value that cannot be stored as data, or a stored tree that is not one :func:`encode` writes."""


def _is_tensor(value: Any) -> bool:
    torch = sys.modules.get("torch")  # a process that never imported torch holds no tensor
    return torch is not None and isinstance(value, torch.Tensor)


def is_encodable(value: Any, tensors: bool = True) -> bool:
    """Whether :func:`encode` can store ``value`` (recursively); ``tensors=False``: one without torch tensors."""
    kind = type(value)
    if value is None or kind in (bool, int, float, complex, str, bytes):
        return True
    if isinstance(value, np.generic):
        return value.dtype != object
    if isinstance(value, np.ndarray):
        return value.dtype != object and value.dtype.fields is None
    if kind is np.random.Generator:
        return type(value.bit_generator).__name__ in BIT_GENERATORS
    if _is_tensor(value):
        return tensors
    if kind in (list, tuple, set, frozenset, collections.deque):
        return all(is_encodable(v, tensors) for v in value)
    if kind is collections.defaultdict and value.default_factory not in DEFAULT_FACTORIES.values():
        return False
    if kind in (dict, collections.OrderedDict, collections.defaultdict):
        return all(is_encodable(k, tensors) and is_encodable(v, tensors) for k, v in value.items())
    return False


_SCALARS = (bool, int, float, str)
#: the mapping types stored, by tag
_MAPPINGS = {dict: "dict", collections.OrderedDict: "odict", collections.defaultdict: "defaultdict"}
_SEQUENCES = (list, tuple, set, frozenset, collections.deque)


class _Encoder:
    """One :func:`encode` call: the tree it builds and the arrays and tensors it set aside (keyed ``a<i>``,
    ``t<i>``)."""

    def __init__(self) -> None:
        self.arrays: dict[str, np.ndarray] = {}
        self.tensors: dict[str, Any] = {}

    def enc(self, v: Any, path: str) -> Any:
        kind = type(v)
        if v is None or kind in _SCALARS:
            return v
        if kind is complex:
            return {"$": "complex", "re": v.real, "im": v.imag}
        if kind is bytes:
            return {"$": "bytes", "b64": base64.b64encode(v).decode("ascii")}
        if isinstance(v, (np.ndarray, np.generic)):
            return self.array(v, path)
        if kind is np.random.Generator:
            return self.generator(v, path)
        if _is_tensor(v):
            key = f"t{len(self.tensors)}"
            self.tensors[key] = v.detach().cpu().contiguous().clone()  # a copy: tied weights share storage
            return {"$": "tensor", "key": key}
        if kind in _SEQUENCES:
            return self.sequence(v, path)
        if kind in _MAPPINGS:
            return self.mapping(v, path)
        raise StateCodecError(f"{path or 'the value'}: a {kind.__module__}.{kind.__qualname__} is not data "
                              "(expected numbers, strings, containers, arrays, tensors or random generators)")

    def array(self, v: np.ndarray | np.generic, path: str) -> dict[str, Any]:
        if not is_encodable(v):
            raise StateCodecError(f"{path or 'the value'}: a NumPy {v.dtype} value cannot be stored as data")
        key = f"a{len(self.arrays)}"
        self.arrays[key] = np.asarray(v)
        return {"$": "ndarray" if isinstance(v, np.ndarray) else "npscalar", "key": key}

    def generator(self, v: np.random.Generator, path: str) -> dict[str, Any]:
        name = type(v.bit_generator).__name__
        if name not in BIT_GENERATORS:
            raise StateCodecError(f"{path}: a Generator over {name}, expected one of {BIT_GENERATORS}")
        return {"$": "generator", "bit_generator": name, "state": self.enc(v.bit_generator.state, path + ".state")}

    def sequence(self, v: Any, path: str) -> Any:
        kind = type(v)
        if kind is list:
            return [self.enc(x, f"{path}[{i}]") for i, x in enumerate(v)]
        items = v if kind in (tuple, collections.deque) else sorted(v, key=repr)  # sets: the same file each time
        node: dict[str, Any] = {"$": kind.__name__}
        if kind is collections.deque:
            node["maxlen"] = v.maxlen
        node["items"] = [self.enc(x, f"{path}[{i}]") for i, x in enumerate(items)]
        return node

    def mapping(self, v: dict[Any, Any], path: str) -> dict[str, Any]:
        node: dict[str, Any] = {"$": _MAPPINGS[type(v)]}
        if type(v) is collections.defaultdict:
            factory = {f: n for n, f in DEFAULT_FACTORIES.items()}.get(v.default_factory)
            if factory is None:
                raise StateCodecError(f"{path}: a defaultdict of {v.default_factory!r} cannot be stored as data")
            node["factory"] = factory
        if all(type(k) is str for k in v):
            node["items"] = {k: self.enc(x, f"{path}[{k!r}]") for k, x in v.items()}
        else:
            node["pairs"] = [[self.enc(k, f"{path}.key"), self.enc(x, f"{path}[{k!r}]")] for k, x in v.items()]
        return node


def encode(value: Any) -> tuple[Any, dict[str, np.ndarray], dict[str, Any]]:
    """``(tree, arrays, tensors)``: ``value`` as a JSON-compatible tree plus the arrays and tensors it holds.

    :raises StateCodecError: naming the path of the first value that is not data (e.g. an object).
    """
    encoder = _Encoder()
    tree = encoder.enc(value, "")
    return tree, encoder.arrays, encoder.tensors


def _generator(state: Any, bit_generator: str) -> np.random.Generator:
    if bit_generator not in BIT_GENERATORS:
        raise StateCodecError(f"unknown bit generator {bit_generator!r}")
    bits = getattr(np.random, bit_generator)()
    bits.state = state
    return np.random.Generator(bits)


def _mapping(node: dict[str, Any], dec: Callable[[Any], Any]) -> Any:
    pairs = (((k, dec(x)) for k, x in node["items"].items()) if "items" in node
             else ((dec(k), dec(x)) for k, x in node["pairs"]))
    if node["$"] == "defaultdict":
        return collections.defaultdict(DEFAULT_FACTORIES[node["factory"]], pairs)
    return (collections.OrderedDict if node["$"] == "odict" else dict)(pairs)


def decode(tree: Any, arrays: dict[str, np.ndarray], tensors: dict[str, Any]) -> Any:
    """The value :func:`encode` stored as ``(tree, arrays, tensors)``.

    :raises StateCodecError: for a node it does not write (an unknown tag, a missing array).
    """
    readers: dict[str, Callable[[dict[str, Any]], Any]] = {
        "complex": lambda n: complex(float(n["re"]), float(n["im"])),
        "bytes": lambda n: base64.b64decode(n["b64"]),
        "ndarray": lambda n: arrays[n["key"]].copy(),
        "npscalar": lambda n: arrays[n["key"]][()],
        "generator": lambda n: _generator(dec(n["state"]), n["bit_generator"]),
        "tensor": lambda n: tensors[n["key"]],
        "tuple": lambda n: tuple(dec(x) for x in n["items"]),
        "set": lambda n: {dec(x) for x in n["items"]},
        "frozenset": lambda n: frozenset(dec(x) for x in n["items"]),
        "deque": lambda n: collections.deque((dec(x) for x in n["items"]), maxlen=n["maxlen"]),
        **{tag: lambda n: _mapping(n, dec) for tag in _MAPPINGS.values()},
    }

    def dec(node: Any) -> Any:
        if node is None or type(node) in _SCALARS:
            return node
        if type(node) is list:
            return [dec(x) for x in node]
        if type(node) is not dict or "$" not in node:
            raise StateCodecError(f"not a stored value: {str(node)[:80]!r}")
        tag = node["$"]
        reader = readers.get(tag) if isinstance(tag, str) else None
        if reader is None:
            raise StateCodecError(f"unknown stored type {tag!r}")
        try:
            return reader(node)
        except (KeyError, TypeError, ValueError) as e:
            raise StateCodecError(f"a stored {tag!r} value is malformed ({type(e).__name__}: {e})") from e

    return dec(tree)


def dumps(value: Any) -> dict[str, bytes]:
    """``value`` as the three files ``state.json``, ``arrays.npz`` and ``tensors.safetensors`` (name -> bytes)."""
    tree, arrays, tensors = encode(value)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    files = {"state.json": json.dumps(tree).encode(), "arrays.npz": buf.getvalue()}
    if tensors:
        from safetensors.torch import save

        files["tensors.safetensors"] = save(tensors)
    return files


def loads(files: dict[str, bytes]) -> Any:
    """The value :func:`dumps` wrote; NumPy reads with ``allow_pickle=False``, tensors come from safetensors."""
    try:
        tree = json.loads(files["state.json"])
        with np.load(io.BytesIO(files["arrays.npz"]), allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (KeyError, ValueError, OSError) as e:
        raise StateCodecError(f"the stored state does not read as data ({type(e).__name__}: {e})") from e
    tensors: dict[str, Any] = {}
    if "tensors.safetensors" in files:
        from safetensors.torch import load

        tensors = load(files["tensors.safetensors"])
    return decode(tree, arrays, tensors)
