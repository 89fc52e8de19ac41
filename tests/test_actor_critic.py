"""lm_core's LM actor-critic and what the engines share through it: the frozen copy, the one observation-space
check, the exact sequence KL, and the SB3 policy's one binding to its algorithm."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3 import PPO
from stable_baselines3.common.buffers import DictRolloutBuffer

import text_envs  # noqa: F401  (registers the envs)
from lm_core.actor_critic import frozen_copy
from lm_core.backends import make_backend, tiny_t5_config
from lm_core.kl import sequence_kl
from lm_core.loading import load_model
from lm_core.observations import ObservationSpaceError, check_token_spaces, observation_parts
from sb3_ext import EpisodeRolloutBuffer, LLMPolicy
from sb3_ext.algorithm_binding import UNKNOWN_CHOICE, constructing_algorithm

th.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("text_envs", "lm_core", "sb3_ext", "rllib_ext", "text_envs_app")


def _obs_space(P: int = 5, T: int = 4, V: int = 11) -> spaces.Dict:
    box = lambda n: spaces.Box(0, V - 1, (n,), dtype=np.int64)  # noqa: E731
    return spaces.Dict({"prompt_ids": box(P), "prompt_mask": box(P), "generated_ids": box(T), "generated_mask": box(T)})


def test_frozen_copy_has_the_weights_and_no_gradient_mode_or_backend_hook():
    th.manual_seed(0)
    lm = load_model(tiny_t5_config(11))
    backend = make_backend(lm, 11)  # hooks the original's LM head
    frozen = frozen_copy(lm)
    assert not frozen.training and not any(p.requires_grad for p in frozen.parameters())
    assert all(th.equal(a, b) for a, b in zip(lm.state_dict().values(), frozen.state_dict().values()))
    assert len(frozen.get_output_embeddings()._forward_pre_hooks) == 0
    ids, mask = th.tensor([[3, 4, 1]]), th.ones((1, 3), dtype=th.long)
    frozen(input_ids=ids, attention_mask=mask, decoder_input_ids=th.zeros((1, 1), dtype=th.long))
    with pytest.raises(AssertionError, match="did not run"):
        backend.take_hidden()  # the copy's forward captured nothing into the original's backend


def test_one_observation_space_check_for_policy_buffer_and_its_message():
    P, T, V = check_token_spaces(_obs_space(), spaces.Discrete(11))
    assert (P, T, V) == (5, 4, 11) and check_token_spaces(_obs_space(), None)[2] is None
    bad = spaces.Dict({k: v for k, v in _obs_space().spaces.items() if k != "generated_mask"})
    for build in (lambda: LLMPolicy(bad, spaces.Discrete(11), lambda _: 1e-3, model=tiny_t5_config(11)),
                  lambda: EpisodeRolloutBuffer(8, bad, spaces.Discrete(11))):
        with pytest.raises(ObservationSpaceError, match=r"missing \['generated_mask'\]\)\. \w+ reads text_envs"):
            build()
    with pytest.raises(ObservationSpaceError, match="expected a Discrete"):
        check_token_spaces(_obs_space(), spaces.Box(0, 1, (3,)))
    parts = observation_parts({k: np.ones((2, n), dtype=np.float32) for k, n in
                               (("prompt_ids", 5), ("prompt_mask", 5), ("generated_ids", 4), ("generated_mask", 4))})
    assert [p.dtype for p in parts] == [th.long] * 4 and parts[3].tolist() == [4, 4]


def test_sequence_kl_is_the_exact_kl_and_zero_against_itself():
    logits = th.tensor([[0.0, 1.0, -1.0], [2.0, 0.0, 0.0]])
    ref = th.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    p, q = logits.softmax(-1), ref.softmax(-1)
    expected = float((p * (p.log() - q.log())).sum())
    assert float(sequence_kl(logits, ref)) == pytest.approx(expected, rel=1e-6)
    assert float(sequence_kl(logits, logits)) == 0.0
    env = gym.make("TextCopy-v0")
    V = int(env.action_space.n)
    th.manual_seed(0)
    policy = LLMPolicy(env.observation_space, env.action_space, lambda _: 1e-3, model=tiny_t5_config(V), kl_coef=0.1,
                       temperature=0.8)
    obs, _ = env.reset(seed=0)
    p_ids, p_mask = th.as_tensor(obs["prompt_ids"][None]), th.as_tensor(obs["prompt_mask"][None])
    tokens = th.tensor([[3, 4, 1]])
    assert policy.text_kl(policy.reference_backend, p_ids, p_mask, tokens) == 0.0  # the start model is the reference
    with th.no_grad():
        policy.model.decoder.final_layer_norm.weight.mul_(0.05)  # the policy near uniform, the reference not
        mine = policy.backend.forward_sequences(p_ids, p_mask, tokens)[0].float() / 0.8
        theirs = policy.reference_backend.forward_sequences(p_ids, p_mask, tokens)[0].float() / 0.8
    kl = policy.text_kl(policy.reference_backend, p_ids, p_mask, tokens)
    assert kl > 0 and kl == pytest.approx(float(sequence_kl(mine, theirs)), rel=1e-6)


def _summarization_ppo(**kwargs):
    env = gym.make("TextSummarization-v0")
    V = int(env.action_space.n)
    return PPO(LLMPolicy, env, policy_kwargs=dict(model=tiny_t5_config(V)), **kwargs), V


def test_bind_algorithm_is_the_one_wiring_and_a_hand_built_policy_can_call_it():
    assert constructing_algorithm() == (None, UNKNOWN_CHOICE)  # outside any algorithm: nothing found
    with pytest.warns(UserWarning, match="DictRolloutBuffer you chose"):
        algo, V = _summarization_ppo(rollout_buffer_class=DictRolloutBuffer)
    assert type(algo.rollout_buffer) is DictRolloutBuffer and algo.policy.algorithm_ref() is algo
    assert algo.policy_kwargs["model"] is None and algo.policy_kwargs["model_config"]["vocab_size"] == V
    # a policy built by hand for an algorithm: bind_algorithm does what construction inside it does
    policy = LLMPolicy(algo.observation_space, algo.action_space, lambda _: 1e-3, model=tiny_t5_config(V))
    assert policy.algorithm_ref is None and policy.double_backward is False
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        policy.bind_algorithm(algo, rollout_buffer_class=None)  # "left out": the costly buffer is swapped
    assert type(algo.rollout_buffer) is EpisodeRolloutBuffer and algo.rollout_buffer.policy is policy
    assert algo.rollout_buffer_class is EpisodeRolloutBuffer


def test_the_call_stack_is_read_in_one_place_and_private_copies_are_gone():
    readers, copies = [], []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            text = path.read_text(encoding="utf-8")
            rel = path.relative_to(ROOT).as_posix()
            if re.search(r"currentframe\(|sys\._getframe|\.f_back\b", text):
                readers.append(rel)
            if re.search(r"^def _(check_spaces?|frozen_copy|find_algorithm|named_buffer_class)\(", text, re.M):
                copies.append(rel)
    assert readers == ["sb3_ext/algorithm_binding.py"], readers
    assert copies == [], copies


def test_the_lm_core_example_runs_as_written(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, str(ROOT / "docs" / "examples" / "lm_core_actor_critic.py")],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.startswith("wrote ") and "last value 0.0" in proc.stdout
    assert "lm_core_actor_critic.py" in (ROOT / "docs" / "guides" / "lm_core.md").read_text()
