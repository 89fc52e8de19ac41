"""Run state as data (text_envs_app.state_codec): what a checkpoint holds comes back equal, type for type, and
anything that is not data is refused by name, on writing and on reading."""

from __future__ import annotations

import collections
import json
import random

import numpy as np
import pytest
import torch as th

from text_envs_app.state_codec import StateCodecError, dumps, is_encodable, loads


def test_a_checkpoints_kinds_of_values_come_back_equal_and_of_the_same_types():
    value = {
        "python_rng": random.getstate(), "numpy_rng": np.random.get_state(), "torch_rng": th.get_rng_state(),
        "generators": [np.random.default_rng(5), np.random.Generator(np.random.MT19937(2))],
        "episodes": collections.deque([{"r": 1.5, "l": 3, "t": 0.25}], maxlen=100),
        (1, "key"): {3, 4}, 7: frozenset({"a"}), "scalar": np.float32(1.25), "flag": np.bool_(True),
        "obs": collections.OrderedDict(prompt_ids=np.arange(6, dtype=np.int64).reshape(2, 3)),
        "bytes": b"\x00\xff", "complex": 1 + 2j, "odd floats": [float("inf"), -0.0], "none": None,
        "counts": collections.defaultdict(list, {1: [2]}), "step": th.tensor(3.0), "big": 2**100,
    }
    back = loads(dumps(value))
    assert back.keys() == value.keys()
    assert back["python_rng"] == value["python_rng"] and back[(1, "key")] == {3, 4} and back[7] == frozenset({"a"})
    assert all(a.random() == b.random() for a, b in zip(back["generators"], value["generators"]))  # same streams
    assert back["episodes"] == value["episodes"] and back["episodes"].maxlen == 100
    assert type(back["scalar"]) is np.float32 and back["scalar"] == np.float32(1.25) and back["flag"] is np.True_
    assert type(back["obs"]) is collections.OrderedDict and back["obs"]["prompt_ids"].dtype == np.int64
    assert np.array_equal(back["obs"]["prompt_ids"], value["obs"]["prompt_ids"])
    assert np.array_equal(back["numpy_rng"][1], value["numpy_rng"][1]) and back["numpy_rng"][2:] == value["numpy_rng"][2:]
    assert th.equal(back["torch_rng"], value["torch_rng"]) and th.equal(back["step"], value["step"])
    assert str(back["odd floats"][1]) == "-0.0" and back["big"] == 2**100 and back["complex"] == 1 + 2j
    assert back["counts"]["new"] == [] and back["bytes"] == b"\x00\xff"


def test_tied_weights_are_stored_as_copies():
    shared = th.arange(4.0)
    back = loads(dumps({"a": shared, "b": shared}))  # safetensors refuses tensors that share storage
    assert th.equal(back["a"], shared) and th.equal(back["b"], shared)


class NotData:
    pass


def test_an_object_is_refused_by_its_path_when_written():
    with pytest.raises(StateCodecError, match=r"\['envs'\]\[0\]\['tokenizer'\]: a .*NotData is not data"):
        dumps({"envs": [{"tokenizer": NotData()}]})
    assert not is_encodable([NotData()]) and not is_encodable(np.array([None], dtype=object))
    assert not is_encodable(collections.defaultdict(NotData))
    assert is_encodable({"t": th.zeros(1)}) and not is_encodable({"t": th.zeros(1)}, tensors=False)


def test_a_tree_naming_anything_but_data_is_refused_when_read():
    files = dumps({"x": 1})
    for node in ({"$": "module", "name": "os"}, {"$": "generator", "bit_generator": "os.system", "state": {}},
                 {"no tag": 1}):
        with pytest.raises(StateCodecError):
            loads({**files, "state.json": json.dumps(node).encode()})
