"""Training choices for other wording (issue 23 item 5): TextContinuation-v0's ``varied_openings`` (a second family
of training openings), the KL anchor of the policy-gradient methods (``sb3_ext.algorithms.kl_anchor``,
``text-envs train --kl-anchor``) and the group algorithms' frozen modules (``--freeze``). The varied openings'
disjointness from the ``ood`` openings is in tests/test_ood_split.py."""

from __future__ import annotations

import copy

import gymnasium as gym
import numpy as np
import pytest
import torch as th

import text_envs  # noqa: F401  (registers the envs)
from sb3_ext import RLOO, LLMPolicy, make_text_vec_env, tiny_t5_config
from sb3_ext.algorithms.kl_anchor import KLAnchor
from text_envs.data.reviews_varied import is_varied_row, varied_review_row
from text_envs.errors import TextEnvsError

th.set_num_threads(1)
T = 6  # a short token budget keeps the tiny models' runs to seconds


def varied_prompts(env, n: int) -> list[bool]:
    """For the first ``n`` train examples of ``env``: whether each is a row of the second family."""
    return [env.example_text(i)[0] == "continue: " + varied_review_row(i)["prompt"] for i in range(n)]


# ------------------------------------------------------------------------------------------------ varied openings
def test_varied_openings_replace_a_seeded_share_of_train_only():
    base = gym.make("TextContinuation-v0").unwrapped
    half = gym.make("TextContinuation-v0", varied_openings=0.5).unwrapped
    flags = varied_prompts(half, 2000)
    assert 0.45 < np.mean(flags) < 0.55
    assert flags == [is_varied_row(i, 0.5) for i in range(2000)]
    # the other rows are the generator's, unchanged; share 0 is the default data; share 1 replaces every row
    assert all(half.example_text(i) == base.example_text(i) for i in range(200) if not flags[i])
    assert not any(varied_prompts(gym.make("TextContinuation-v0", varied_openings=0.0).unwrapped, 200))
    assert all(varied_prompts(gym.make("TextContinuation-v0", varied_openings=1.0).unwrapped, 200))
    # the rows replaced at 0.25 are among those replaced at 0.5 (a larger share only adds rows)
    assert all(f for i, f in enumerate(flags) if is_varied_row(i, 0.25))
    for split in ("validation", "test", "ood"):  # what is evaluated does not change
        mixed = gym.make("TextContinuation-v0", split=split, varied_openings=1.0).unwrapped
        plain = gym.make("TextContinuation-v0", split=split).unwrapped
        assert all(mixed.example_text(i) == plain.example_text(i) for i in range(100)), split


def test_varied_rows_are_seeded_reviews_of_both_labels():
    rows = [varied_review_row(i) for i in range(600)]
    assert rows == [varied_review_row(i) for i in range(600)]  # the same on every call (and machine: string seeds)
    assert 0.4 < np.mean([r["label"] for r in rows]) < 0.6
    assert {r["domain"] for r in rows} == {"film", "restaurant", "product"}
    assert len({r["prompt"] for r in rows}) > 500
    two = varied_review_row(3, 2)
    assert two["prompt"].count(".") == 2 and two["text"] == f"{two['prompt']} {two['continuation']}"


def test_bad_varied_openings_say_what_is_expected(tmp_path):
    for bad in (1.5, -0.1, "half", True):
        with pytest.raises(TextEnvsError, match="between 0 and 1"):
            gym.make("TextContinuation-v0", varied_openings=bad)
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"text": "I went to the cinema and the film was long."}\n')
    with pytest.raises(TextEnvsError, match="embedded train split"):
        gym.make("TextContinuation-v0", dataset=str(rows), split="train", varied_openings=0.5)


# ------------------------------------------------------------------------------------------------ the KL anchor
def anchor_setup(coef: float = 1.0, texts: int = 6, sampler: str = "policy"):
    env = gym.make("TextContinuation-v0", varied_openings=1.0, max_new_tokens=T).unwrapped
    encoded = [env.encode_prompt(env.example_text(i)[0]) for i in range(12)]
    anchor = KLAnchor(np.stack([e[0] for e in encoded]), np.stack([e[1] for e in encoded]), coef=coef, texts=texts,
                      sampler=sampler, max_new_tokens=T, eos_token_id=env.eos_token_id, pad_token_id=env.pad_token_id,
                      seed=0)
    th.manual_seed(0)
    policy = LLMPolicy(env.observation_space, env.action_space, lambda _: 1e-3, model=tiny_t5_config(env.vocab_size),
                       tokenizer=env.tokenizer, kl_coef=0.1)
    return anchor, policy


def test_anchor_is_zero_at_the_reference_and_its_gradient_points_back():
    anchor, policy = anchor_setup()
    texts = anchor.sample(policy, 0)
    at_start = anchor.loss(policy, texts)
    at_start.backward()
    assert abs(float(at_start.detach())) < 1e-6

    def largest_gradient() -> float:
        return max(float(p.grad.abs().max()) for p in policy.model.parameters() if p.grad is not None)

    start_gradient = largest_gradient()  # zero up to float error (the policy's and the reference's rounding)
    policy.zero_grad()
    with th.no_grad():  # move the policy away from its reference
        for p in policy.model.parameters():
            p.add_(0.05 * th.randn_like(p))
    moved = anchor.loss(policy, texts)
    assert float(moved.detach()) > 1e-3
    moved.backward()
    assert start_gradient < 1e-3 * largest_gradient()
    with th.no_grad():  # a small step down the gradient brings it back towards the reference on these texts
        for p in policy.model.parameters():
            if p.grad is not None:
                p.sub_(1e-2 * p.grad)
    assert float(anchor.loss(policy, texts).detach()) < float(moved.detach())
    doubled, _ = anchor_setup(coef=2.0)
    assert float(doubled.loss(policy, texts).detach()) == pytest.approx(2 * float(anchor.loss(policy, texts).detach()),
                                                                       rel=1e-5)


def test_anchor_of_a_lora_policy_is_its_base():
    """With ``lora=...`` the anchor's reference is the base (the adapters disabled): zero at the start, the same
    loss as against a policy whose reference is a frozen copy of those weights once the adapters move, and texts
    sampled from the reference are the base's, not the adapted policy's."""
    pytest.importorskip("peft")
    anchor, plain = anchor_setup(sampler="reference")
    env = gym.make("TextContinuation-v0", max_new_tokens=T).unwrapped
    lora = LLMPolicy(env.observation_space, env.action_space, lambda _: 1e-3, model=copy.deepcopy(plain.model),
                     tokenizer=env.tokenizer, kl_coef=0.1, lora=dict(r=4, lora_alpha=8, target_modules=["q", "v"]))
    texts = anchor.sample(lora, 0)
    assert [t["tokens"].tolist() for t in texts] == [t["tokens"].tolist() for t in anchor.sample(plain, 0)]
    assert abs(float(anchor.loss(lora, texts).detach())) < 1e-6
    gen = th.Generator().manual_seed(0)
    with th.no_grad():
        for name, p in lora.named_parameters():
            if "lora_" in name:
                p.add_(0.5 * th.randn(p.shape, generator=gen))
    lora.reset_cache()
    assert [t["tokens"].tolist() for t in anchor.sample(lora, 0)] == [t["tokens"].tolist() for t in texts]
    merged = copy.deepcopy(lora.model).merge_and_unload()  # the adapted weights as a plain model
    with th.no_grad():
        plain.model.load_state_dict(merged.state_dict())  # the same policy, its reference a frozen copy of the base
    plain.reset_cache()
    moved = anchor.loss(lora, texts)
    assert float(moved.detach()) > 1e-3
    # float32 either way, but W x + B (A x) against (W + B A) x: the two round differently (about 1e-5 relative)
    th.testing.assert_close(moved, anchor.loss(plain, texts), rtol=1e-4, atol=0.0)


def test_anchor_texts_are_seeded_and_leave_the_random_stream_alone():
    anchor, policy = anchor_setup()
    th.manual_seed(7)
    state = th.random.get_rng_state()
    first = anchor.sample(policy, 3)
    assert th.equal(th.random.get_rng_state(), state)  # the rollouts' draws are a run's without the anchor
    again = anchor.sample(policy, 3)
    assert all(np.array_equal(a["tokens"], b["tokens"]) and np.array_equal(a["prompt_ids"], b["prompt_ids"])
               for a, b in zip(first, again))
    other = anchor.sample(policy, 4)
    assert any(not np.array_equal(a["prompt_ids"], b["prompt_ids"]) for a, b in zip(first, other))
    assert all(1 <= len(t["tokens"]) <= T for t in first)
    assert all(t["tokens"][-1] == anchor.eos_token_id for t in first if len(t["tokens"]) < T)  # ends at its EOS
    reference, _ = anchor_setup(sampler="reference")
    assert all(np.array_equal(a["tokens"], b["tokens"]) for a, b in zip(first, reference.sample(policy, 3)))
    # (the policy is its reference here: both samplers draw the same texts)


def test_bad_anchors_are_refused_with_the_fix():
    ids = np.zeros((4, 8), dtype=np.int64)
    with pytest.raises(TextEnvsError, match="encode_prompt"):
        KLAnchor(ids, ids[:, :5], coef=1.0)
    with pytest.raises(TextEnvsError, match="> 0"):
        KLAnchor(ids, ids, coef=0.0)
    with pytest.raises(TextEnvsError, match="policy"):
        KLAnchor(ids, ids, coef=1.0, sampler="start")


def rloo(anchor: KLAnchor | None, seed: int = 0, **kwargs) -> RLOO:
    env = make_text_vec_env("TextContinuation-v0", 8, seed=seed, group_size=4, env_kwargs=dict(max_new_tokens=T))
    V = int(env.action_space.n)
    return RLOO(LLMPolicy, env, learning_rate=3e-3, beta=0.1, n_steps=T, seed=seed, kl_anchor=copy.deepcopy(anchor),
                policy_kwargs=dict(model=tiny_t5_config(V), tokenizer=env.get_attr("tokenizer")[0]), **kwargs)


def test_rloo_with_an_anchor_repeats_exactly_and_stays_nearer_its_reference(one_train_thread):
    anchor, _ = anchor_setup(coef=20.0)
    runs = []
    for kl_anchor in (anchor, anchor, None):
        model = rloo(kl_anchor)
        model.learn(8 * T * 4)
        runs.append(model)
    a, b, free = (m.policy.state_dict() for m in runs)
    tensors = [k for k in a if isinstance(a[k], th.Tensor)]
    assert all(th.equal(a[k], b[k]) for k in tensors)  # seeded: the same weights bit for bit
    assert any(not th.equal(a[k], free[k]) for k in tensors if k.startswith("model."))
    texts = [t for u in range(4) for t in anchor.sample(runs[0].policy, 100 + u)]  # prompts the anchor acts on

    def anchor_kl(model):
        with th.no_grad():
            return float(anchor.loss(model.policy, texts)) / anchor.coef  # nats per text

    assert anchor_kl(runs[0]) < anchor_kl(runs[2])


def test_the_cli_option_builds_the_anchor_and_refuses_other_algorithms():
    from text_envs_app.algorithms import ANCHOR_PROMPTS, make_config, varied_openings_anchor

    cfg = make_config(kl_anchor=0.5)
    cfg.validate()
    built = varied_openings_anchor(cfg)
    assert built.coef == 0.5 and built.prompt_ids.shape == (ANCHOR_PROMPTS, 64) and built.texts == 16
    env = gym.make("TextContinuation-v0", varied_openings=1.0).unwrapped
    assert np.array_equal(built.prompt_ids[5], env.encode_prompt(env.example_text(5)[0])[0])
    with pytest.raises(TextEnvsError, match="--kl-anchor"):
        make_config(algo="ppo", kl_anchor=0.5).validate()
    with pytest.raises(TextEnvsError, match="--kl-anchor"):
        varied_openings_anchor(make_config(env="TextSummarization-v0", algo="rloo", kl_anchor=0.5))


# ------------------------------------------------------------------------------------------------ frozen modules
def test_frozen_modules_keep_their_start_weights_and_the_rest_learns():
    frozen = rloo(None, frozen_modules=("encoder", "shared"))
    start = {k: v.clone() for k, v in frozen.policy.model.state_dict().items()}
    frozen.learn(8 * T * 2)
    after = frozen.policy.model.state_dict()
    assert all(th.equal(start[k], after[k]) for k in after if k.startswith(("encoder.", "shared.", "lm_head.")))
    assert any(not th.equal(start[k], after[k]) for k in after if k.startswith("decoder.block."))
    with pytest.raises(TextEnvsError, match="no submodule 'encodr'.*'encoder'"):
        rloo(None, frozen_modules=("encodr",))
    with pytest.raises(TextEnvsError, match="sequence"):
        rloo(None, frozen_modules="encoder")


def test_the_freeze_option_reaches_the_algorithm():
    from text_envs_app.algorithms import algorithm_kwargs, make_config

    cfg = make_config(freeze="encoder, shared")
    cfg.validate()
    env = make_text_vec_env("TextContinuation-v0", 8, seed=0, group_size=8, env_kwargs=dict(max_new_tokens=T))
    assert algorithm_kwargs(cfg, dict(env=env))["frozen_modules"] == ("encoder", "shared")
    for bad in (dict(algo="ppo", freeze="encoder"), dict(freeze=" , ")):
        with pytest.raises(TextEnvsError, match="--freeze"):
            make_config(**bad).validate()


def test_dotted_names_freeze_the_decoder_attention_and_leave_the_feed_forward_training():
    # the decoder's self- and cross-attention frozen by their dotted names (T5: block.i.layer.0 and layer.1), as in
    # the feed-forward-only setting measured for other wording (guides/main_job.md, generalisation)
    attention = tuple(f"decoder.block.{i}.layer.{j}" for i in range(2) for j in (0, 1))
    model = rloo(None, frozen_modules=("encoder", "shared", *attention))
    start = {k: v.clone() for k, v in model.policy.model.state_dict().items()}
    model.learn(8 * T * 2)
    after = model.policy.model.state_dict()
    assert all(th.equal(start[k], after[k]) for k in after if k.startswith(tuple(f"{a}." for a in attention)))
    assert any(not th.equal(start[k], after[k]) for k in after if ".layer.2.DenseReluDense." in k)
    with pytest.raises(TextEnvsError, match="no submodule 'decoder.block.9'"):
        rloo(None, frozen_modules=("decoder.block.9",))
