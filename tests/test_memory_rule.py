"""The update's memory (issue 25 item 6): the log-probs and entropies of the taken tokens keep one (N, V) tensor for
the backward pass, and the rule that decides when a minibatch runs in checkpointed chunks
(``lm_core.episodes.chunk_trigger_bytes``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch as th
from helpers import EOS, PAD, make_model, t5_config
from torch.distributions import Categorical

from lm_core.backends import make_backend
from lm_core.episodes import (
    CHUNK_TRIGGER_ENV,
    CPU_CHUNK_TRIGGER,
    EpisodeBatch,
    chunk_trigger_bytes,
    episode_activation_bytes,
    teacher_forced_outputs,
)
from lm_core.sampling import taken_log_probs_and_entropy

th.set_num_threads(1)
V = 40


def _logits(dtype: th.dtype = th.float64) -> th.Tensor:
    return th.randn(9, 50, generator=th.Generator().manual_seed(0), dtype=dtype) * 3


def _categorical(z: th.Tensor, actions: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
    dist = Categorical(logits=z, validate_args=False)
    return dist.log_prob(actions), dist.entropy()


def test_taken_log_probs_and_entropy_equal_categorical_with_gradients():
    actions = th.randint(0, 50, (9,), generator=th.Generator().manual_seed(1))
    weights = th.randn(2, 9, generator=th.Generator().manual_seed(2), dtype=th.float64) * 5
    results = []
    for fn in (_categorical, taken_log_probs_and_entropy):
        z = _logits().requires_grad_(True)
        log_prob, entropy = fn(z, actions)
        (grad,) = th.autograd.grad((log_prob * weights[0] + entropy * weights[1]).sum(), z)
        results.append((log_prob.detach(), entropy.detach(), grad))
    for got, want in zip(results[1], results[0]):
        th.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [th.float32, th.float64])
def test_masked_tokens_get_no_probability_and_no_gradient(dtype):
    """Tokens outside a top-k / top-p support hold the dtype's minimum (``distribution_logits``): the result is the
    distribution over the other tokens, with finite gradients (Categorical's own are NaN here in float64)."""
    actions = th.randint(0, 10, (9,), generator=th.Generator().manual_seed(1))
    weights = th.randn(2, 9, generator=th.Generator().manual_seed(2), dtype=dtype) * 5
    kept = _logits(dtype).requires_grad_(True)
    z = th.cat([kept, th.full((9, 20), th.finfo(dtype).min, dtype=dtype)], 1)  # (9, 70): the last 20 masked
    for create_graph in (False, True):
        log_prob, entropy = taken_log_probs_and_entropy(z, actions)
        (grad,) = th.autograd.grad((log_prob * weights[0] + entropy * weights[1]).sum(), z, create_graph=create_graph)
        want_lp, want_h = _categorical(kept, actions)
        (want,) = th.autograd.grad((want_lp * weights[0] + want_h * weights[1]).sum(), kept)
        tol = dict(rtol=1e-5, atol=1e-5) if dtype == th.float32 else dict(rtol=1e-12, atol=1e-12)
        th.testing.assert_close(log_prob, want_lp, **tol)
        th.testing.assert_close(entropy, want_h, **tol)
        th.testing.assert_close(grad[:, :50], want, **tol)
        assert th.equal(grad[:, 50:], th.zeros_like(grad[:, 50:]))


def test_taken_log_probs_and_entropy_second_derivative():
    actions = th.tensor([3, 0, 7, 1, 2, 9, 4, 4, 5])
    v = th.randn(9, 50, generator=th.Generator().manual_seed(3), dtype=th.float64)
    hvps = []
    for lean in (False, True):
        z = _logits().requires_grad_(True)
        log_prob, entropy = (taken_log_probs_and_entropy if lean else _categorical)(z, actions)
        (grad,) = th.autograd.grad((log_prob + 0.3 * entropy).sum(), z, create_graph=True)
        hvps.append(th.autograd.grad((grad * v).sum(), z)[0])
    th.testing.assert_close(hvps[1], hvps[0], rtol=1e-10, atol=1e-12)


def test_taken_log_probs_and_entropy_checks_shapes():
    with pytest.raises(ValueError, match=r"expected logits \(B, V\) and actions \(B,\)"):
        taken_log_probs_and_entropy(th.zeros(4, 5), th.zeros(3, dtype=th.long))


def _saved_vocabulary_tensors(policy_fn, N: int, vocab: int) -> int:
    """How many (N, >= V) tensors autograd keeps for the backward pass while ``policy_fn`` runs."""
    shapes = []

    def pack(t):
        shapes.append(tuple(t.shape))
        return t

    with th.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        policy_fn()
    return sum(1 for s in shapes if len(s) == 2 and s[0] == N and s[1] >= vocab)


def test_evaluate_actions_keeps_one_vocabulary_sized_tensor():
    """The update's loss over the vocabulary: torch's Categorical kept five (N, V) tensors (the temperature's output,
    normalised logits, probabilities, clamped logits, their product); LLMPolicy keeps one."""
    import numpy as np
    from gymnasium import spaces

    from sb3_ext import LLMPolicy

    vocab, P, T = 300, 6, 5
    box = lambda n: spaces.Box(0, vocab - 1, shape=(n,), dtype=np.int64)  # noqa: E731
    observation_space = spaces.Dict({"prompt_ids": box(P), "prompt_mask": spaces.Box(0, 1, shape=(P,), dtype=np.int64),
                                     "generated_ids": box(T),
                                     "generated_mask": spaces.Box(0, 1, shape=(T,), dtype=np.int64)})
    policy = LLMPolicy(observation_space, spaces.Discrete(vocab), lambda _: 1e-4,
                       model=t5_config(vocab, feed_forward_proj="gated-gelu"))
    batch = _batch(E=6, P=P, L=T, vocab=vocab)
    count = _saved_vocabulary_tensors(lambda: policy.evaluate_actions(batch, batch.taken_actions), len(batch), vocab)
    assert count == 1


def test_chunk_trigger_from_the_environment(monkeypatch):
    monkeypatch.setenv(CHUNK_TRIGGER_ENV, "")  # empty: the default (and removed again after the test)
    assert chunk_trigger_bytes() == CPU_CHUNK_TRIGGER
    monkeypatch.setenv(CHUNK_TRIGGER_ENV, "96")
    assert chunk_trigger_bytes() == 96 * 2**20
    monkeypatch.setenv(CHUNK_TRIGGER_ENV, "off")
    assert chunk_trigger_bytes() is None
    for bad in ("-1", "lots"):
        monkeypatch.setenv(CHUNK_TRIGGER_ENV, bad)
        with pytest.raises(ValueError, match=CHUNK_TRIGGER_ENV):
            chunk_trigger_bytes()


def test_auto_chunks_only_above_the_trigger(monkeypatch):
    """``activation_budget="auto"``: one forward (no recomputation) while the minibatch's estimate is at most the
    trigger; chunks above it; never with the trigger off."""
    model = make_model("gpt2", V)
    backend = make_backend(model, V)
    batch = _batch(E=7, P=12, L=6, vocab=V)
    calls = []
    forward = backend.forward_sequences
    backend.forward_sequences = lambda *a: calls.append(a[0].shape[0]) or forward(*a)  # episodes per forward
    bound = batch.num_episodes * episode_activation_bytes(model.config, 12, 7)  # at least the batch's estimate
    monkeypatch.setattr("lm_core.episodes.CPU_ACTIVATION_BUDGET", 1)  # chunks of one episode when chunked
    for trigger_mib, chunked in ((bound / 2**20 + 1, False), (0, True), ("off", False)):
        monkeypatch.setenv(CHUNK_TRIGGER_ENV, str(trigger_mib))
        calls.clear()
        teacher_forced_outputs(backend, batch)
        assert calls == ([1] * batch.num_episodes if chunked else [batch.num_episodes]), trigger_mib


def _batch(E: int, P: int, L: int, vocab: int) -> EpisodeBatch:
    """E episodes of different prompt widths and lengths, an output at every generated position."""
    g = np.random.default_rng(0)
    widths, lengths = g.integers(2, P + 1, E), g.integers(1, L + 1, E)
    prompt_ids, prompt_mask = np.full((E, P), PAD), np.zeros((E, P), dtype=np.int64)
    for e, w in enumerate(widths):  # left-padded, ending with EOS, as the envs give them
        prompt_ids[e, P - w:], prompt_mask[e, P - w:] = g.integers(3, vocab, w), 1
        prompt_ids[e, -1] = EOS
    out = [(e, t) for e in range(E) for t in range(lengths[e])]
    return EpisodeBatch(prompt_ids=th.as_tensor(prompt_ids), prompt_mask=th.as_tensor(prompt_mask),
                        tokens=th.as_tensor(g.integers(3, vocab, (E, L))),
                        out_episode=th.as_tensor([e for e, _ in out]), out_pos=th.as_tensor([t for _, t in out]))
