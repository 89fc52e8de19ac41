"""lm_core: the engine-neutral language-model core.

``sb3_ext`` re-exports it under the old names and module paths (old imports and objects pickled before the move
keep working), and its teacher-forced helpers equal the cached rollout's per-step outputs, which is what every
adapter's learner relies on. (That it imports no training engine is checked in tests/test_layout.py.)
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch as th
from helpers import EOS, FakeCopyEnv, t5_config
from transformers import AutoModelForSeq2SeqLM

from lm_core.backends import DecodeState, make_backend
from lm_core.episodes import EpisodeBatch, sequence_log_probs, teacher_forced_outputs
from text_envs.errors import TextEnvsError

th.set_num_threads(1)


def test_sb3_ext_reexports_the_core_objects():
    import lm_core.backends
    import lm_core.fluency
    import lm_core.kl
    import lm_core.sampling
    import lm_core.static_cache
    import sb3_ext
    import sb3_ext.backends
    import sb3_ext.buffers
    import sb3_ext.fluency
    import sb3_ext.kl
    import sb3_ext.policy
    import sb3_ext.static_cache

    for old, new in ((sb3_ext.backends, lm_core.backends), (sb3_ext.kl, lm_core.kl),
                     (sb3_ext.static_cache, lm_core.static_cache), (sb3_ext.fluency, lm_core.fluency)):
        names = [n for n in vars(new) if not n.startswith("__") and getattr(vars(new)[n], "__module__", "") == new.__name__]
        assert names, new.__name__
        with pytest.warns(FutureWarning, match=f"{old.__name__}.*moved to {new.__name__}.*0.3.0"):
            missing = [n for n in names if getattr(old, n, None) is not getattr(new, n)]
        assert not missing, f"{old.__name__} does not re-export {missing} of {new.__name__}"
    with pytest.raises(AttributeError):  # an unknown name is still an AttributeError, not a silent None
        sb3_ext.backends.no_such_name
    for name in ("load_model", "tiny_t5_config", "greedy_baseline", "ModelLoadError", "FixedKLController",
                 "AdaptiveKLController", "kl_estimate", "start_model_perplexity", "sequence_nll", "EpisodeBatch"):
        assert getattr(sb3_ext, name) is getattr(__import__("lm_core"), name), name
    assert sb3_ext.buffers.EpisodeBatch is EpisodeBatch
    assert sb3_ext.policy.sample_tokens is lm_core.sampling.sample_tokens


def test_objects_pickled_under_the_old_module_path_still_load():
    from lm_core.kl import AdaptiveKLController

    ctl = AdaptiveKLController(0.1, target=6.0, horizon=100)
    ctl.update(9.0, 4)
    raw = pickle.dumps(ctl, protocol=4)
    assert b"lm_core.kl" in raw
    old = raw.replace(b"lm_core.kl", b"sb3_ext.kl")  # what a pickle written before the move names (same length)
    with pytest.warns(FutureWarning, match="sb3_ext.kl.AdaptiveKLController moved to lm_core.kl"):
        back = pickle.loads(old)
    assert isinstance(back, AdaptiveKLController) and back.value == ctl.value
    with pytest.raises(ModuleNotFoundError):  # negative control: a path that re-exports nothing does not load
        pickle.loads(raw.replace(b"lm_core.kl", b"sb3_ext.kx"))


def _model_and_episodes(V: int = 12, E: int = 4, P: int = 5, T: int = 6, seed: int = 0):
    th.manual_seed(seed)
    model = AutoModelForSeq2SeqLM.from_config(t5_config(V, dropout_rate=0.0)).eval()
    rng = np.random.default_rng(seed)
    lens = rng.integers(2, T + 1, E)
    prompt_ids, prompt_mask = th.zeros((E, P), dtype=th.long), th.zeros((E, P), dtype=th.long)
    for e in range(E):
        n = int(rng.integers(1, P + 1))
        prompt_ids[e, P - n:] = th.as_tensor(rng.integers(3, V, n))
        prompt_ids[e, -1], prompt_mask[e, P - n:] = EOS, 1
    tokens = th.as_tensor(rng.integers(2, V, (E, T)))
    for e in range(E):
        tokens[e, lens[e]:] = 0
    batch = EpisodeBatch(prompt_ids=prompt_ids, prompt_mask=prompt_mask, tokens=tokens,
                         out_episode=th.as_tensor(np.repeat(np.arange(E), lens)),
                         out_pos=th.as_tensor(np.concatenate([np.arange(n) for n in lens])))
    return model, batch, lens


def _cached_log_probs(backend, batch, lens, T: int = 6) -> th.Tensor:
    """log p(token taken) at every step of the episodes, from the rollout's per-row KV cache (one token per call)."""
    state = DecodeState(backend)
    E = batch.num_episodes
    per_step = th.zeros((E, T))
    with th.no_grad():
        for t in range(int(max(lens))):
            gen = th.where(th.arange(T)[None] < t, batch.tokens, th.zeros_like(batch.tokens))
            logits, _ = state(batch.prompt_ids, batch.prompt_mask, gen, th.full((E,), t))
            per_step[:, t] = logits.log_softmax(-1).gather(-1, batch.tokens[:, t, None]).squeeze(-1)
    return per_step[batch.out_episode, batch.out_pos]


def test_teacher_forced_log_probs_equal_the_cached_rollout():
    model, batch, lens = _model_and_episodes()
    backend = make_backend(model, 12)
    actions = batch.tokens[batch.out_episode, batch.out_pos]
    cached = _cached_log_probs(backend, batch, lens)
    for chunk in (1, 3, 32):  # chunking the episodes changes nothing
        tf = sequence_log_probs(backend, batch, actions, chunk_episodes=chunk)
        assert th.allclose(tf, cached, atol=1e-4), (chunk, float((tf - cached).abs().max()))
    with th.no_grad():
        logits, hidden = teacher_forced_outputs(backend, batch)
    assert logits.shape[0] == hidden.shape[0] == len(batch)
    assert th.allclose(logits.log_softmax(-1).gather(-1, actions[:, None]).squeeze(-1), cached, atol=1e-4)
    # temperature: the logits are divided by it before the softmax
    hot = sequence_log_probs(backend, batch, actions, temperature=2.0)
    assert th.allclose(hot, (logits / 2.0).log_softmax(-1).gather(-1, actions[:, None]).squeeze(-1), atol=1e-5)
    # negative control: outputs read one position late (a stale/shifted alignment) do not match
    late = EpisodeBatch(batch.prompt_ids, batch.prompt_mask, th.cat([batch.tokens, batch.tokens[:, :1]], 1),
                        batch.out_episode, batch.out_pos + 1)
    shifted = sequence_log_probs(backend, late, actions)
    assert (shifted - cached).abs().max() > 1e-2
    with pytest.raises(ValueError, match="chunk_episodes >= 1"):
        sequence_log_probs(backend, batch, actions, chunk_episodes=0)


def test_core_warm_start_reads_a_gymnasium_env_and_sb3_a_vec_env():
    from stable_baselines3.common.vec_env import DummyVecEnv

    # ``from X.warm_start import``, not ``import X.warm_start as m``: ``sb3_ext.warm_start`` is also the function
    from lm_core.warm_start import supervised_examples as core_examples
    from sb3_ext.warm_start import supervised_examples as sb3_examples

    class Budget:  # the only policy attribute supervised_examples reads
        T = 5

    env = FakeCopyEnv()
    direct = core_examples(Budget(), env, max_examples=8)
    via_vec = sb3_examples(Budget(), DummyVecEnv([FakeCopyEnv]), max_examples=8)
    assert len(direct) == len(via_vec) == 8
    for a, b in zip(direct, via_vec):
        assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert all(t[-1] == EOS and len(t) <= Budget.T for _, _, t in direct)
    with pytest.raises(TextEnvsError, match="num_examples.*sb3_ext.warm_start"):
        core_examples(Budget(), DummyVecEnv([FakeCopyEnv]))  # the core takes no SB3 VecEnv
