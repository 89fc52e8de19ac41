"""``frozen_modules`` / ``--freeze`` with ``*`` patterns: every matching submodule, at any depth of model, leaves
training; a pattern that matches nothing is refused with the names to use."""

from __future__ import annotations

import pytest
import torch as th

import text_envs  # noqa: F401  (registers the envs)
from sb3_ext import RLOO, LLMPolicy, make_text_vec_env, tiny_t5_config
from text_envs.errors import TextEnvsError

T = 6

th.set_num_threads(1)


def _rloo(frozen: tuple[str, ...]) -> RLOO:
    env = make_text_vec_env("TextContinuation-v0", 8, seed=0, group_size=4, env_kwargs=dict(max_new_tokens=T))
    V = int(env.action_space.n)
    return RLOO(LLMPolicy, env, learning_rate=3e-3, beta=0.1, n_steps=T, seed=0, frozen_modules=frozen,
                policy_kwargs=dict(model=tiny_t5_config(V), tokenizer=env.get_attr("tokenizer")[0]))


def test_a_pattern_freezes_every_match_and_the_rest_trains():
    model = _rloo(("encoder", "shared", "decoder.block.*.layer.0", "decoder.block.*.layer.1"))
    blocks = len(model.policy.model.decoder.block)
    assert blocks >= 2
    start = {k: v.clone() for k, v in model.policy.model.state_dict().items()}
    model.learn(8 * T * 2)
    after = model.policy.model.state_dict()
    attention = tuple(f"decoder.block.{i}.layer.{j}." for i in range(blocks) for j in (0, 1))
    assert all(th.equal(start[k], after[k]) for k in after if k.startswith(attention))
    for i in range(blocks):  # every block's feed-forward trained
        assert any(not th.equal(start[k], after[k]) for k in after if k.startswith(f"decoder.block.{i}.layer.2."))


def test_a_pattern_that_matches_nothing_is_refused():
    with pytest.raises(TextEnvsError, match=r"no submodule of the model matches 'decoder\.blocks\.\*'"):
        _rloo(("decoder.blocks.*",))


def test_the_default_freeze_is_the_shipped_models_only():
    """The main job's default freezes submodules by the shipped T5's names; a user's --model trains every weight
    unless --freeze is given (a GPT-2 has no 'encoder' to freeze)."""
    from text_envs_app.algorithms import make_config

    assert make_config(env="TextContinuation-v0").freeze
    assert make_config(env="TextContinuation-v0", model="gpt2").freeze is None
    assert make_config(env="TextContinuation-v0", model="gpt2", freeze="transformer.h.0").freeze == "transformer.h.0"
