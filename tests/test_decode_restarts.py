"""Restarting rows of the rollout cache (lm_core/decode_state.py): a fresh seq2seq row folded into the shared
one-token step, equal prompts encoded once, and every mix of memoised, advancing and rebuilt rows, each against the
uncached forward (``backend.forward_next``: one full forward per row, no cache)."""

from __future__ import annotations

import numpy as np
import pytest
import torch as th
from helpers import EOS, gpt2_config, t5_config
from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM

from lm_core.backends import DecodeState, Seq2SeqBackend, make_backend
from lm_core.decode_state import right_align, unique_rows

th.set_num_threads(1)

V, P, T = 40, 7, 6
TOL = 1e-4  # float32 log-probs: cached and uncached differ in summation order only (masked slots add exact zeros)


def tiny(kind: str, seed: int = 0):
    th.manual_seed(seed)
    if kind == "t5":
        return AutoModelForSeq2SeqLM.from_config(t5_config(V, dropout_rate=0.0)).eval()
    return AutoModelForCausalLM.from_config(gpt2_config(V, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)).eval()


class Counting:
    """Counts a backend's prefills and the rows its encoder saw (wrapping the bound methods)."""

    def __init__(self, backend):
        self.prefills, self.encoded_rows = 0, 0
        prefill, encode = backend.prefill, getattr(backend, "encode", None)

        def counted_prefill(*args):
            self.prefills += 1
            return prefill(*args)

        def counted_encode(ids, mask):
            self.encoded_rows += ids.shape[0]
            return encode(ids, mask)

        backend.prefill = counted_prefill
        if encode is not None:
            backend.encode = counted_encode


def random_prompt(rng: np.random.Generator) -> tuple[th.Tensor, th.Tensor]:
    n = int(rng.integers(1, P + 1))
    ids, mask = th.zeros(P, dtype=th.long), th.zeros(P, dtype=th.long)
    ids[P - n:] = th.as_tensor(rng.integers(3, V, n))
    ids[-1], mask[P - n:] = EOS, 1
    return ids, mask


def worst_gap(state: DecodeState, obs: tuple[th.Tensor, ...]) -> float:
    """The largest log-prob and hidden-state difference of the cached call to the uncached forward (through a
    backend of its own, so that the state's backend counts the state's work only)."""
    reference = make_backend(state.backend.model, V)
    try:
        with th.no_grad():
            lg, hd = state(*obs)
            ref_lg, ref_hd = reference.forward_next(*obs)
    finally:
        reference.remove_hook()
    return max(float((lg.log_softmax(-1) - ref_lg.log_softmax(-1)).abs().max()), float((hd - ref_hd).abs().max()))


def scripted_rollout(state: DecodeState, steps: int = 40, B: int = 5, seed: int = 0, group: int = 1,
                     stats: dict | None = None) -> float:
    """Drive ``state`` with observations that restart rows at random (budget, early end), hold a row (memoised),
    jump a row to a foreign prefix; rows in blocks of ``group`` share a prompt and restart together. Returns the
    worst gap to the uncached forward; ``stats["row_starts"]`` counts the rows given a new prompt."""
    stats = stats if stats is not None else {}
    stats["row_starts"] = B
    rng = np.random.default_rng(seed)
    pid, pm = th.zeros((B, P), dtype=th.long), th.zeros((B, P), dtype=th.long)
    for g in range(0, B, group):
        pid[g:g + group], pm[g:g + group] = random_prompt(rng)
    gen, glen = th.zeros((B, T), dtype=th.long), th.zeros(B, dtype=th.long)
    worst = 0.0
    for step in range(steps):
        worst = max(worst, worst_gap(state, (pid, pm, gen, glen)))
        hold = step % 5 == 2  # row 0 stays put: a memoised row beside advancing and restarting ones
        for g in range(0, B, group):
            block = slice(g, g + group)
            if group > 1 and (glen[block] >= T).any() or rng.random() < 0.15:  # the whole group restarts together
                pid[block], pm[block] = random_prompt(rng)
                gen[block], glen[block] = 0, 0
                stats["row_starts"] += len(range(B)[block])
                continue
            for r in range(g, min(g + group, B)):
                if r == 0 and hold:
                    continue
                if glen[r] >= T:
                    pid[r], pm[r] = random_prompt(rng)
                    gen[r], glen[r] = 0, 0
                    stats["row_starts"] += 1
                    continue
                gen[r, glen[r]] = int(rng.integers(2, V))
                glen[r] += 1
        if step == steps // 2:  # a foreign observation: a row jumps to an unrelated prefix
            gen[B - 1, :3] = th.as_tensor(rng.integers(3, V, 3))
            glen[B - 1] = 3
    return worst


def test_a_restart_folded_into_the_step_equals_a_fresh_prefill():
    lm = tiny("t5")
    folded, separate = DecodeState(make_backend(lm, V)), DecodeState(make_backend(lm, V))
    separate.folds_starts = False  # today's path before the fold: a prefill for every restarting row
    folded_calls, separate_calls = Counting(folded.backend), Counting(separate.backend)
    assert scripted_rollout(folded) < TOL
    assert scripted_rollout(separate) < TOL
    assert folded.backend.folds_starts  # the T5 cross-attention keys/values matched the model's own at the first prefill
    # the fold replaced most prefills: only the first call and the foreign/memoised rows (length > 0) still take one
    assert separate_calls.prefills >= 15 and folded_calls.prefills <= separate_calls.prefills // 3, (
        folded_calls.prefills, separate_calls.prefills)


def test_equal_prompts_are_encoded_once_and_equal_separate_encodes(monkeypatch):
    lm = tiny("t5")
    B, group = 8, 4
    state = DecodeState(make_backend(lm, V))
    counts, stats = Counting(state.backend), {}
    assert scripted_rollout(state, B=B, group=group, steps=30, stats=stats) < TOL
    # groups restart together: each distinct prompt went through the encoder once, not once per row (the few
    # extra rows: memoised and foreign rows rebuilt alone)
    assert counts.encoded_rows <= stats["row_starts"] // group + 8, (counts.encoded_rows, stats)

    import lm_core.decode_state

    monkeypatch.setattr(lm_core.decode_state, "unique_rows", lambda *columns: None)  # no sharing: a row, an encode
    apart = DecodeState(make_backend(lm, V))
    apart_counts, apart_stats = Counting(apart.backend), {}
    assert scripted_rollout(apart, B=B, group=group, steps=30, stats=apart_stats) < TOL
    assert apart_stats == stats and apart_counts.encoded_rows >= stats["row_starts"]
    monkeypatch.undo()

    with th.no_grad():  # one shared prompt in 8 rows: one encode and one prefill, equal to the prompt alone
        ids, mask = random_prompt(np.random.default_rng(3))
        obs = (ids.repeat(B, 1), mask.repeat(B, 1), th.zeros((B, T), dtype=th.long), th.zeros(B, dtype=th.long))
        single = DecodeState(make_backend(lm, V))
        single_counts = Counting(single.backend)
        together, _ = single(*obs)
        alone, _ = DecodeState(make_backend(lm, V))(*(x[:1] for x in obs))
    assert single_counts.encoded_rows == 1 and single_counts.prefills == 1
    assert float((together - alone).abs().max()) < TOL


@pytest.mark.parametrize("kind", ["t5", "gpt2"])
def test_mixed_memo_advance_start_and_rebuild_rows_in_one_call(kind):
    """One call with a memoised row, advancing rows, fresh rows (two with the same prompt) and a foreign row."""
    lm = tiny(kind)
    state = DecodeState(make_backend(lm, V))
    rng = np.random.default_rng(1)
    B = 6
    pid, pm = map(th.stack, zip(*[random_prompt(rng) for _ in range(B)]))
    gen, glen = th.zeros((B, T), dtype=th.long), th.zeros(B, dtype=th.long)
    for _ in range(3):  # every row three tokens in
        assert worst_gap(state, (pid, pm, gen, glen)) < TOL
        gen[th.arange(B), glen] = th.as_tensor(rng.integers(2, V, B))
        glen += 1
    gen[0, glen[0] - 1] = 0  # row 0: back to what it had consumed (memoised)
    glen[0] -= 1
    for r in (3, 4):  # rows 3 and 4: a fresh episode, the same new prompt
        pid[r], pm[r] = pid[5], pm[5]
        gen[r], glen[r] = 0, 0
    pid[5], pm[5] = random_prompt(rng)  # row 5: a foreign observation, a new prompt with a prefix of 1
    glen[5] = 1
    assert worst_gap(state, (pid, pm, gen, glen)) < TOL
    gen[th.arange(B), glen] = th.as_tensor(rng.integers(2, V, B))
    glen += 1
    assert worst_gap(state, (pid, pm, gen, glen)) < TOL  # the next step over the rows started every way


@pytest.mark.parametrize("kind", ["t5", "gpt2"])
def test_after_a_reset_rows_of_every_length_are_rebuilt_in_one_prefill(kind):
    """After an update (``reset``), every row is mid-text at its own length: one prefill with the prefixes
    right-aligned (a hole the cache keeps masked) equals the uncached forward, then and at the steps after."""
    lm = tiny(kind)
    state = DecodeState(make_backend(lm, V))
    counts = Counting(state.backend)
    rng = np.random.default_rng(2)
    B = 5
    pid, pm = map(th.stack, zip(*[random_prompt(rng) for _ in range(B)]))
    gen = th.as_tensor(rng.integers(2, V, (B, T)))
    glen = th.tensor([0, 1, 3, 3, 4])
    gen[th.arange(T)[None] >= glen[:, None]] = 0
    assert worst_gap(state, (pid, pm, gen, glen)) < TOL
    assert counts.prefills == 1
    for _ in range(2):
        gen[th.arange(B), glen] = th.as_tensor(rng.integers(2, V, B))
        glen = glen + 1
        assert worst_gap(state, (pid, pm, gen, glen)) < TOL
    assert counts.prefills == 1


def test_right_align_moves_real_tokens_to_the_end_in_order():
    ids = th.tensor([[0, 5, 6, 0, 7], [8, 9, 0, 0, 0], [1, 2, 3, 4, 5]])
    mask = th.tensor([[0, 1, 1, 0, 1], [1, 1, 0, 0, 0], [1, 1, 1, 1, 1]])
    aligned, aligned_mask = right_align(ids, mask)
    assert aligned_mask.tolist() == [[0, 0, 1, 1, 1], [0, 0, 0, 1, 1], [1, 1, 1, 1, 1]]
    assert (aligned * aligned_mask).tolist() == [[0, 0, 5, 6, 7], [0, 0, 0, 8, 9], [1, 2, 3, 4, 5]]


def test_an_unknown_cross_attention_layout_keeps_the_prefill_and_stays_exact(monkeypatch):
    """Negative control: keys/values computed the wrong way (swapped) fail the check against the model's own, and
    the state keeps prefills; forcing the fold with them breaks the equality the other tests rely on."""
    lm = tiny("t5")

    def swapped(self, enc):
        return [(v, k) for k, v in Seq2SeqBackend.cross_attention_kv(self, enc)]

    checked = make_backend(lm, V)
    checked.cross_attention_kv = swapped.__get__(checked)
    state = DecodeState(checked)
    assert scripted_rollout(state, steps=20) < TOL
    assert not checked.folds_starts

    forced = make_backend(lm, V)
    forced.cross_attention_kv = swapped.__get__(forced)
    monkeypatch.setattr(type(forced), "folds_starts", property(lambda self: True))
    assert scripted_rollout(DecodeState(forced), steps=20) > 10 * TOL


def test_unique_rows_maps_every_row_to_its_first_equal_row():
    a = th.tensor([[1, 2], [3, 4], [1, 2], [5, 6], [3, 4]])
    b = th.tensor([[0], [1], [0], [0], [1]])
    first, inverse = unique_rows(a, b)
    assert th.equal(a[first][inverse], a) and th.equal(b[first][inverse], b)
    assert sorted(first.tolist()) == [0, 1, 3]
    assert unique_rows(a[:2], b[:2]) is None  # all distinct: nothing to share
    assert unique_rows(a[:1]) is None
