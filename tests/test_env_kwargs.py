"""Bad keyword arguments in the Python API get what the CLI gives: the env's valid options and a close match, from
the signatures (so a keyword added to an env is accepted without a list to update); a vector env whose
construction failed closes quietly."""

from __future__ import annotations

import gc
import inspect
import sys

import gymnasium as gym
import pytest

import text_envs  # noqa: F401  (registers the ids)
from text_envs.errors import TextEnvsError, UnknownKeywordError
from text_envs.vector import TextGenerationVectorEnv


def test_gym_make_names_the_env_its_options_and_where_group_size_belongs():
    with pytest.raises(UnknownKeywordError) as info:
        gym.make("TextContinuation-v0", group_size=4)
    message = str(info.value)
    assert message.startswith("gym.make('TextContinuation-v0') got an unknown keyword argument 'group_size'.")
    assert "'group_size' belongs to gym.make_vec('TextContinuation-v0', num_envs=N, ...)" in message
    assert "TextGenerationEnv" not in message and "was raised from the environment creator" not in message
    for option in ("reward", "max_new_tokens", "difficulty", "prompt_words", "split", "render_mode"):
        assert option in message.split("Valid keyword arguments: ")[1]


def test_a_misspelt_keyword_gets_the_closest_valid_one():
    with pytest.raises(UnknownKeywordError, match=r"unknown keyword argument 'max_new_token'\. Did you mean "
                                                  r"'max_new_tokens'"):
        gym.make("TextSummarization-v0", max_new_token=8)


def test_the_valid_options_come_from_the_signatures():
    from text_envs.tasks.continuation import TextContinuationEnv

    own = [p for p in inspect.signature(TextContinuationEnv.__init__).parameters if p not in ("self", "kwargs")]
    with pytest.raises(UnknownKeywordError) as info:
        gym.make("TextContinuation-v0", not_an_option=1)
    listed = info.value.args[0].split("Valid keyword arguments: ")[1].rstrip(".").split(", ")
    assert set(own) <= set(listed) and "shaping_gamma" in listed  # the task's and its base's keyword-only ones
    assert "source" not in listed  # the base's positional arguments are the task's to fill


def test_make_vec_accepts_group_size_and_refuses_a_misspelling_with_the_vector_options():
    venv = gym.make_vec("TextContinuation-v0", num_envs=4, group_size=2, max_new_tokens=4)
    assert venv.group_size == 2
    venv.close()
    with pytest.raises(UnknownKeywordError) as info:
        gym.make_vec("TextContinuation-v0", num_envs=4, grup_size=2)
    message = str(info.value)
    assert "gym.make_vec('TextContinuation-v0', ...) got an unknown keyword argument 'grup_size'" in message
    assert "Did you mean 'group_size'" in message and "autoreset_mode" in message and "reward" in message


def test_a_vector_env_whose_construction_failed_closes_quietly(monkeypatch):
    class Failing(TextGenerationVectorEnv):
        task_entry_point = "text_envs.tasks.continuation:TextContinuationEnv"

        def _check_supported(self, env):
            raise RuntimeError("refused")

    unraisable: list[str] = []  # what __del__ raises is printed, not raised: catch it
    monkeypatch.setattr(sys, "unraisablehook", lambda u: unraisable.append(f"{u.exc_type.__name__}: {u.exc_value}"))
    with pytest.raises(RuntimeError, match="refused"):
        Failing(2)
    with pytest.raises(TextEnvsError, match="group_size must be a positive integer that divides num_envs=2"):
        gym.make_vec("TextCopy-v0", num_envs=2, group_size=3)
    with pytest.raises(UnknownKeywordError):
        gym.make_vec("TextContinuation-v0", num_envs=2, grup_size=2)
    gc.collect()  # runs VectorEnv.__del__ -> close() of the half-built envs
    assert unraisable == []


def test_a_half_built_vector_env_close_raises_nothing():
    venv = TextGenerationVectorEnv.__new__(TextGenerationVectorEnv)  # as if __init__ raised at its first line
    venv.close()
    assert venv.closed
