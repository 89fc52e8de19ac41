"""Supervised warm start on an env's references, then RL (the "supervised + RL" pipeline)."""

from __future__ import annotations

import gymnasium as gym
import pytest
import torch as th
from stable_baselines3 import PPO
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy

import text_envs  # noqa: F401
from sb3_ext import EpisodeRolloutBuffer, LLMPolicy, warm_start
from text_envs.errors import TextEnvsError

th.set_num_threads(1)


def test_warm_start_solves_text_copy_and_resets_reference():
    env = make_vec_env("TextCopy-v0", n_envs=4, seed=0)
    model = PPO(LLMPolicy, env, n_steps=16, batch_size=64, seed=0, rollout_buffer_class=EpisodeRolloutBuffer,
                policy_kwargs=dict(kl_coef=0.05))
    before, _ = evaluate_policy(model, env, n_eval_episodes=32, deterministic=True)
    losses = warm_start(model.policy, env, epochs=80, batch_size=16, learning_rate=3e-3)
    assert losses[-1] < 0.5 * losses[0]
    after, _ = evaluate_policy(model, env, n_eval_episodes=64, deterministic=True)
    assert after >= gym.spec("TextCopy-v0").reward_threshold > before
    ref, pol = model.policy.reference_model.state_dict(), model.policy.model.state_dict()
    assert all(th.equal(ref[k], pol[k]) for k in ref)
    model.learn(256)  # RL continues from the warm-started weights with KL to them


def test_warm_start_rejects_envs_without_examples():
    from helpers import FakeCopyEnv

    env = FakeCopyEnv()
    policy = LLMPolicy(env.observation_space, env.action_space, lambda _: 1e-3)
    with pytest.raises(TextEnvsError, match="expected epochs >= 1"):
        warm_start(policy, env, epochs=0)
    with pytest.raises(TextEnvsError, match="num_examples"):
        warm_start(policy, gym.make("CartPole-v1"))


def _reference_batch(policy, env, n: int = 6):
    """Teacher-forced batch of the env's first references, with the policy's and the reference's log-probs."""
    import numpy as np

    from sb3_ext import EpisodeBatch
    from sb3_ext.warm_start import supervised_examples

    items = supervised_examples(policy, env, max_examples=n)
    lens = [len(t) for _, _, t in items]
    tokens = np.zeros((len(items), max(lens)), dtype=np.int64)
    for j, (_, _, t) in enumerate(items):
        tokens[j, : len(t)] = t
    batch = EpisodeBatch(
        prompt_ids=th.as_tensor(np.stack([p for p, _, _ in items])),
        prompt_mask=th.as_tensor(np.stack([m for _, m, _ in items])),
        tokens=th.as_tensor(tokens),
        out_episode=th.as_tensor(np.repeat(np.arange(len(items)), lens)),
        out_pos=th.as_tensor(np.concatenate([np.arange(k) for k in lens])),
    )
    actions = batch.tokens[batch.out_episode, batch.out_pos]
    with th.no_grad():
        _, log_prob, _ = policy.evaluate_actions(batch, actions)
    return log_prob, policy.reference_log_probs(batch, actions)


def _lora_policy(env):
    from helpers import make_model

    return LLMPolicy(env.observation_space, env.action_space, lambda _: 1e-3, model=make_model("t5", env.V),
                     tokenizer=env.tokenizer, kl_coef=0.1, lora=dict(r=4, lora_alpha=8, target_modules=["q", "v"]))


def test_lora_update_reference_makes_the_current_weights_the_reference():
    from helpers import FakeCopyEnv

    env = FakeCopyEnv()
    policy = _lora_policy(env)
    with th.no_grad():  # trained adapters: the policy now differs from its base (the reference)
        for name, p in policy.model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    lp, ref = _reference_batch(policy, env)
    assert (lp - ref).abs().max() > 1e-2
    policy.update_reference()
    lp_after, ref_after = _reference_batch(policy, env)
    # float32 logits of a 2-layer model: merging reorders a few sums, ~1e-6; 1e-4 leaves a wide margin
    assert th.allclose(lp_after, lp, atol=1e-4)  # the policy is unchanged
    assert th.allclose(ref_after, lp, atol=1e-4)  # the reference is the current policy
    assert all(p.abs().max() == 0 for n, p in policy.model.named_parameters() if "lora_B" in n)
    assert not any(k.startswith("reference_model.") for k in policy.state_dict())  # no copy of the base


def test_lora_warm_start_resets_the_reference_and_gives_a_greedy_baseline_model():
    from helpers import EOS, PAD, FakeCopyEnv

    from sb3_ext import greedy_baseline

    env = FakeCopyEnv()
    policy = _lora_policy(env)
    # the README's self-critical line: greedy_baseline(model.policy.reference_model, ...) needs a model
    assert policy.reference_model is not None
    prompts = [env.encode_prompt(env.example_text(i)[0])[0] for i in range(3)]
    prompts = [p[p != PAD] for p in prompts]
    base_greedy = greedy_baseline(policy.reference_model, EOS, PAD, env.T)(prompts)
    with policy.model.disable_adapter():
        assert base_greedy == greedy_baseline(policy.model, EOS, PAD, env.T)(prompts)
    warm_start(policy, env, epochs=3, batch_size=16, learning_rate=1e-2, max_examples=32)
    lp, ref = _reference_batch(policy, env)
    assert th.allclose(ref, lp, atol=1e-4)  # update_reference=True: KL to the warm-started weights is 0
    # the reference model is the warm-started policy now: its greedy text is the policy's
    assert greedy_baseline(policy.reference_model, EOS, PAD, env.T)(prompts) == \
        greedy_baseline(policy.model, EOS, PAD, env.T)(prompts)


def test_warm_start_targets_drop_a_bos_token():
    """A Llama/Mistral-style tokenizer prepends BOS to every text: the target is what the policy writes, the
    reference's tokens then EOS, never a BOS first."""
    from helpers import EOS, FakeCopyEnv
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    from sb3_ext.warm_start import supervised_examples

    env = FakeCopyEnv()
    policy = LLMPolicy(env.observation_space, env.action_space, lambda _: 1e-3)
    vocab = {"<pad>": 0, "</s>": 1, "<s>": 2, **{f"s{i}": 3 + i for i in range(9)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<pad>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 2)])
    env.tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>",
                                            bos_token="<s>")
    assert env.tokenizer("s0 s1")["input_ids"] == [2, 3, 4]  # BOS first, as Llama's tokenizer does
    for i, (_, _, target) in enumerate(supervised_examples(policy, env, max_examples=8)):
        words = env.example_text(i)[1][0].split()
        assert target.tolist() == ([3 + int(w[1:]) for w in words] + [EOS])[: policy.T]
