"""SelfCriticalReward: each text is paid its reward minus a baseline text's reward for the same prompt."""

from __future__ import annotations

import pickle

import gymnasium as gym
import numpy as np
import pytest
from stable_baselines3.common.monitor import Monitor

from text_envs.errors import TextEnvsError
from text_envs.wrappers import BaselinePool, SelfCriticalReward


def _write(env: gym.Env, ids: list[int]) -> tuple[float, dict]:
    """Generate ``ids`` then EOS; return the final reward and info."""
    base = env.unwrapped
    reward, info = 0.0, {}
    for token in [*ids, base.eos_token_id]:
        _, reward, terminated, _, info = env.step(token)
        if terminated:
            break
    return reward, info


def _reference_ids(env: gym.Env) -> list[int]:
    base = env.unwrapped
    return base.tokenizer.encode(base.example.references[0], add_special_tokens=False)


def test_reward_is_relative_to_the_baseline_text_and_monitor_keeps_the_task_reward():
    inner = Monitor(gym.make("TextSummarization-v0", split="validation"))
    calls = []

    def baseline_fn(prompts):  # the reference itself: the best a baseline can do
        calls.append([np.asarray(p) for p in prompts])
        return [_reference_ids(inner) + [inner.unwrapped.eos_token_id, 7, 7]]  # what follows EOS is dropped

    env = SelfCriticalReward(inner, baseline_fn, batch_size=1)
    env.reset(seed=0)
    base = env.unwrapped
    # the baseline sees the prompt as the observation holds it, without padding
    assert len(calls) == 0
    reward, info = _write(env, _reference_ids(env))
    assert info["baseline_reward"] == pytest.approx(1.0) and info["reward"] == pytest.approx(1.0)
    assert reward == pytest.approx(0.0)
    np.testing.assert_array_equal(calls[0][0], base._prompt_ids[base._prompt_mask == 1])
    assert info["baseline_text"] == base.example.references[0]
    assert info["episode"]["r"] == pytest.approx(1.0)  # Monitor inside the wrapper logs the task reward

    # a worse text is paid below zero, by exactly its task reward minus the baseline's
    env.reset(options={"example_index": 3})
    reward, info = _write(env, _reference_ids(env)[:3])
    assert 0.0 < info["reward"] < 1.0
    assert reward == pytest.approx(info["reward"] - 1.0)


def test_baselines_are_cached_and_prepared_in_batches_for_the_next_draws():
    env = SelfCriticalReward(gym.make("TextSummarization-v0", split="validation"), None, batch_size=8)
    batches = []
    env.baseline_fn = lambda prompts: batches.append(len(prompts)) or [[5, 6]] * len(prompts)  # as set_attr does
    for _ in range(3):
        env.reset(options={"example_index": 2})
        _write(env, [5])
    assert batches == [1]  # no draws pending: the one example, then the cache
    env.reset(seed=1)
    upcoming = env.unwrapped.upcoming_examples(7)
    _write(env, [5])
    assert batches == [1, 8]  # the current example and the next 7 the env has drawn
    assert all(i in env.unwrapped._prompt_cache for i in upcoming)  # tokenized once, for the env's resets too
    for index in upcoming:  # their episodes need no further call
        obs, info = env.reset()
        assert info["example_index"] == index
        _, info = _write(env, [5])
        assert info["baseline_text"] == env.unwrapped.decode([5, 6])
    assert batches == [1, 8]


def test_a_shared_pool_decodes_every_envs_prompts_in_one_call():
    """The envs of one VecEnv share a BaselinePool: the first env to finish gets the baselines of the texts every
    env is writing and of their next draws in one call, and each env is paid against its own prompt's text."""
    from stable_baselines3.common.vec_env import DummyVecEnv

    def baseline_fn(prompts):  # a text that depends on the prompt, to check each env gets its own
        batches.append(len(prompts))
        return [[int(t) for t in p[-3:-1]] for p in prompts]

    batches: list[int] = []
    pool = BaselinePool(baseline_fn, batch_size=8)
    venv = DummyVecEnv([lambda: SelfCriticalReward(Monitor(gym.make("TextSummarization-v0", split="validation")),
                                                   pool=pool) for _ in range(4)])
    venv.seed(0)
    venv.reset()
    bases = [env.unwrapped for env in venv.envs]
    eos = np.array([b.eos_token_id for b in bases])
    for round_ in range(3):
        prompts = [b._prompt_ids[b._prompt_mask == 1] for b in bases]
        _, rewards, dones, infos = venv.step(eos)  # every env ends its text at once
        assert dones.all()
        for base, prompt, info, reward in zip(bases, prompts, infos, rewards):
            assert info["baseline_text"] == base.decode(prompt[-3:-1])
            assert reward == pytest.approx(info["reward"] - info["baseline_reward"])
        # 4 texts being written + the next draw of each env, then (round 2) those are ready, then a new batch
        assert batches == [8, 8][: 1 + round_ // 2]
    assert pool.calls == 2
    pool.baseline_fn = None  # a local function does not pickle; a SubprocVecEnv worker gets a copy of the rest
    copy = pickle.loads(pickle.dumps(pool))
    assert copy.batch_size == 8 and not copy._members and len(copy._decoded) == len(pool._decoded)
    with pytest.raises(TextEnvsError, match="BaselinePool"):
        SelfCriticalReward(gym.make("TextSummarization-v0"), batch_size=4, pool=pool)


def test_missing_baseline_and_wrong_env_fail_clearly():
    env = SelfCriticalReward(gym.make("TextSummarization-v0", split="validation"))
    env.reset(seed=0)
    with pytest.raises(TextEnvsError, match="baseline_fn"):
        _write(env, [5])
    with pytest.raises(TextEnvsError, match="task reward"):
        SelfCriticalReward(gym.make("CartPole-v1"))


def test_greedy_baseline_writes_what_the_policy_writes_greedily():
    """The starting model's greedy text, as the wrapper scores it, is the text the env gets from the same
    model acting greedily: the baseline is decoded exactly like a rollout."""
    from stable_baselines3 import PPO

    from sb3_ext import EpisodeRolloutBuffer, LLMPolicy, greedy_baseline

    env = gym.make("TextSummarization-v0", split="validation", difficulty=3)
    base = env.unwrapped
    model = PPO(LLMPolicy, env, n_steps=8, batch_size=8, rollout_buffer_class=EpisodeRolloutBuffer, device="cpu")
    lm = model.policy.model
    fn = greedy_baseline(lm.eval(), base.eos_token_id, base.pad_token_id, base.max_new_tokens)
    wrapped = SelfCriticalReward(env, fn)

    def cut(ids):
        return ids[: ids.index(base.eos_token_id)] if base.eos_token_id in ids else ids

    prompts = []
    for index in (0, 1, 2):
        ids, mask = base.encode_prompt(base.source[index].prompt)
        prompts.append(ids[mask == 1])
    assert len({len(p) for p in prompts}) > 1  # a batch of different lengths, left-padded
    assert [cut(x) for x in fn(prompts)] == [cut(fn([p])[0]) for p in prompts]
    for index in (0, 1):
        obs, _ = wrapped.reset(options={"example_index": index})
        done, info = False, {}
        while not done:
            action, _ = model.predict(obs, deterministic=True)
            obs, reward, done, _, info = wrapped.step(action)
        assert info["baseline_text"] == info["generated_text"]
        assert reward == pytest.approx(0.0)


def test_train_config_baseline_choices():
    from text_envs_app.config import TrainConfig

    with pytest.raises(TextEnvsError, match="greedy"):
        TrainConfig(baseline="mean").validate()
    with pytest.raises(TextEnvsError, match="batch_size"):
        SelfCriticalReward(gym.make("TextSummarization-v0"), batch_size=0)


def _argmax_decode(lm, prompt: list[int], eos: int, max_new_tokens: int) -> list[int]:
    """Greedy decoding by hand: the argmax of a plain forward at each step, until EOS or the budget."""
    import torch as th

    ids = th.as_tensor([prompt])
    out: list[int] = []
    with th.no_grad():
        for _ in range(max_new_tokens):
            if lm.config.is_encoder_decoder:
                dec = th.as_tensor([[lm.config.decoder_start_token_id, *out]])
                logits = lm(input_ids=ids, decoder_input_ids=dec).logits[0, -1]
            else:
                logits = lm(input_ids=th.cat([ids, th.as_tensor([out], dtype=th.long)], 1)).logits[0, -1]
            out.append(int(logits.argmax()))
            if out[-1] == eos:
                break
    return out


@pytest.mark.parametrize("kind", ["t5", "gpt2"])
def test_greedy_baseline_ignores_the_checkpoint_generation_settings(kind):
    """A hub checkpoint's generation_config (beams, minimum length, repetition penalties) must not change the
    baseline: it is the greedy text, as the policy writes it acting greedily."""
    from helpers import EOS, PAD, make_model

    from sb3_ext import greedy_baseline

    lm = make_model(kind, 12, seed=1).eval()
    lm.generation_config.update(num_beams=3, min_length=8, min_new_tokens=5, repetition_penalty=5.0,
                                no_repeat_ngram_size=1)
    prompts = [[3, 4, 5, EOS], [6, 7, 8, 9, EOS]]
    expected = [_argmax_decode(lm, p, EOS, 6) for p in prompts]
    fn = greedy_baseline(lm, EOS, PAD, 6)

    def cut(ids):
        return ids[: ids.index(EOS) + 1] if EOS in ids else ids

    got = [cut(fn([p])[0]) for p in prompts]
    assert got == expected
    assert lm.generation_config.num_beams == 3  # the model's own settings are left as they were
    # the settings do change generate()'s text here, so the check above could fail
    import torch as th

    plain = lm.generate(input_ids=th.as_tensor([prompts[0]]), max_new_tokens=6, pad_token_id=PAD)
    plain = plain[0, 1:] if kind == "t5" else plain[0, len(prompts[0]):]
    assert cut(plain.tolist()) != expected[0]


def test_setting_baseline_fn_again_drops_the_cached_baselines():
    """A new baseline function (e.g. greedy_baseline over the warm-started model) decides every later baseline:
    neither the pool's decodings nor the wrappers' scores of the old one are reused."""
    from stable_baselines3.common.vec_env import DummyVecEnv

    pool = BaselinePool(lambda prompts: [[5, 6]] * len(prompts), batch_size=4)
    venv = DummyVecEnv([lambda: SelfCriticalReward(gym.make("TextSummarization-v0", split="validation"),
                                                   pool=pool) for _ in range(2)])
    wrappers = venv.envs
    for env in wrappers:
        env.reset(options={"example_index": 1})
        _, info = _write(env, [5])
        assert info["baseline_text"] == env.unwrapped.decode([5, 6])
    assert pool._decoded and all(env._scored for env in wrappers)
    venv.set_attr("baseline_fn", lambda prompts: [[7, 8, 9]] * len(prompts))  # as after a warm start
    assert not pool._decoded
    for env in wrappers:  # the same example again: the new function's text, on every env sharing the pool
        env.reset(options={"example_index": 1})
        _, info = _write(env, [5])
        assert info["baseline_text"] == env.unwrapped.decode([7, 8, 9])
    with pytest.raises(TextEnvsError, match="expected baseline_fn to be a function"):
        pool.baseline_fn = "greedy"
