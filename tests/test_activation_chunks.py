"""Teacher-forced forwards in checkpointed chunks (lm_core.episodes, the update's memory bound): the same outputs and
gradients as one forward, chunks that cover every episode once, and the estimate they are sized by."""

from __future__ import annotations

import numpy as np
import pytest
import torch as th
from helpers import EOS, PAD, make_model

from lm_core.backends import make_backend
from lm_core.episodes import (
    CPU_ACTIVATION_BUDGET,
    EpisodeBatch,
    activation_chunks,
    episode_activation_bytes,
    teacher_forced_outputs,
)

th.set_num_threads(1)
V = 40


def episodes(seed: int = 0, E: int = 7, P: int = 12, L: int = 6) -> EpisodeBatch:
    """E episodes of different prompt widths and lengths; outputs at every generated position, shuffled."""
    g = np.random.default_rng(seed)
    widths = g.integers(2, P + 1, E)
    lengths = g.integers(1, L + 1, E)
    prompt_ids = np.full((E, P), PAD)
    prompt_mask = np.zeros((E, P), dtype=np.int64)
    for e, w in enumerate(widths):  # left-padded, as the envs give them
        prompt_ids[e, P - w:] = g.integers(3, V, w)
        prompt_ids[e, -1] = EOS
        prompt_mask[e, P - w:] = 1
    tokens = g.integers(3, V, (E, L))
    out = [(e, t) for e in range(E) for t in range(lengths[e])]
    out = [out[i] for i in g.permutation(len(out))]
    return EpisodeBatch(
        prompt_ids=th.as_tensor(prompt_ids), prompt_mask=th.as_tensor(prompt_mask), tokens=th.as_tensor(tokens),
        out_episode=th.as_tensor([e for e, _ in out]), out_pos=th.as_tensor([t for _, t in out]),
    )


@pytest.mark.parametrize("kind", ["t5", "gpt2"])
def test_chunked_outputs_and_gradients_equal_one_forward(kind):
    model = make_model(kind, V)
    model.eval()
    backend = make_backend(model, V)
    batch = episodes()
    weights = th.randn(len(batch), V, generator=th.Generator().manual_seed(1))
    results = []
    for budget in (None, 1, 3 * episode_activation_bytes(model.config, 12, 6)):  # one forward, 1 episode, ~3 episodes
        model.zero_grad()
        logits, hidden = teacher_forced_outputs(backend, batch, activation_budget=budget)
        ((logits.log_softmax(-1) * weights).sum() + hidden.pow(2).sum()).backward()
        grads = th.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
        results.append((logits.detach(), hidden.detach(), grads))
    for logits, hidden, grads in results[1:]:
        th.testing.assert_close(logits, results[0][0], rtol=1e-5, atol=1e-5)
        th.testing.assert_close(hidden, results[0][1], rtol=1e-5, atol=1e-5)
        scale = float(results[0][2].abs().max())  # float32 sums in another order: error relative to the largest
        th.testing.assert_close(grads, results[0][2], rtol=1e-4, atol=1e-5 * scale)


def test_chunks_cover_every_episode_once_within_the_budget():
    model = make_model("t5", V)
    g = np.random.default_rng(0)
    widths, lengths = g.integers(1, 200, 50), g.integers(1, 48, 50)
    one = episode_activation_bytes(model.config, 200, 48)
    chunks = activation_chunks(model.config, widths, lengths, 4 * one)
    assert sorted(np.concatenate(chunks).tolist()) == list(range(50))
    for rows in chunks:  # each chunk padded to its widest prompt and longest text stays within the budget
        cost = len(rows) * episode_activation_bytes(model.config, widths[rows].max(), lengths[rows].max())
        assert cost <= 4 * one or len(rows) == 1
    assert len(chunks) < 50  # episodes were grouped
    assert len(activation_chunks(model.config, widths, lengths, 1)) == 50  # a tiny budget: one episode per chunk
    with pytest.raises(ValueError, match="at least 1 byte"):
        activation_chunks(model.config, widths, lengths, 0)


def test_activation_estimate_grows_quadratically_with_a_t5_prompt():
    model = make_model("t5", V)
    small, large = (episode_activation_bytes(model.config, w, 8) for w in (100, 400))
    assert 4 < large / small < 16  # quadratic attention beside linear feed-forward parts
    causal = make_model("gpt2", V)
    assert episode_activation_bytes(causal.config, 10, 10) == episode_activation_bytes(causal.config, 15, 5)


def test_no_chunks_without_gradients_or_off_cpu_by_default():
    model = make_model("gpt2", V)
    backend = make_backend(model, V)
    batch = episodes()
    calls = []
    forward = backend.forward_sequences
    backend.forward_sequences = lambda *a: calls.append(a[0].shape[0]) or forward(*a)  # episodes per forward
    with th.no_grad():
        teacher_forced_outputs(backend, batch, activation_budget=1)
    assert calls == [batch.num_episodes]
    calls.clear()
    teacher_forced_outputs(backend, batch, activation_budget=1)
    assert calls == [1] * batch.num_episodes
    calls.clear()
    teacher_forced_outputs(backend, batch)  # "auto": a small minibatch (under CPU_CHUNK_TRIGGER) runs in one forward
    assert calls == [batch.num_episodes]
    assert CPU_ACTIVATION_BUDGET > 0
    with pytest.raises(ValueError, match="number of bytes"):
        teacher_forced_outputs(backend, batch, activation_budget="small")


def test_double_backward_through_chunks_runs_the_math_kernel_again():
    """TRPO's Hessian-vector products differentiate the update twice: the recomputed chunks must use the kernel
    the forward was run with (the "math" one), or the second backward fails."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    model = make_model("gpt2", V)
    model.eval()
    backend = make_backend(model, V)
    batch = episodes()
    params = [p for p in model.parameters()]
    hvps = []
    for budget in (None, 1):
        with sdpa_kernel(SDPBackend.MATH):
            logits, _ = teacher_forced_outputs(backend, batch, activation_budget=budget)
            loss = logits.log_softmax(-1)[:, 3].sum()
            grads = th.autograd.grad(loss, params, create_graph=True)
        hvp = th.autograd.grad(sum(gr.sum() for gr in grads), params, allow_unused=True)
        hvps.append(th.cat([h.flatten() for h in hvp if h is not None]))
    th.testing.assert_close(hvps[1], hvps[0], rtol=1e-4, atol=1e-5 * float(hvps[0].abs().max()))
