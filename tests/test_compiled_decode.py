"""The static KV cache and the compiled decode step (sb3_ext/static_cache.py) against the dynamic cached path.

Fast tests run the static cache with an eager step (``compile="static"``): same buffers, same refill logic as
the compiled path. The ``expensive`` tests compile the step with inductor (once per model per module; about
10-30 s each on a loaded 2-core machine) and check the same equalities.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch as th
from helpers import EOS, FakeCopyEnv, gpt2_config, llama_config, t5_config
from stable_baselines3 import PPO
from stable_baselines3.common.env_util import make_vec_env
from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM

from lm_core.backends import DecodeState, make_backend
from lm_core.static_cache import StaticDecodeState
from sb3_ext import EpisodeRolloutBuffer, LLMPolicy
from text_envs.errors import TextEnvsError

th.set_num_threads(1)

CONFIGS = {"t5": t5_config, "gpt2": gpt2_config, "llama": llama_config}
TOL = 1e-4  # float32 log-probs: the two paths differ only in summation order over masked (zero) slots


def make_model(kind: str, V: int, seed: int = 0):
    th.manual_seed(seed)
    cfg = CONFIGS[kind](V, dropout_rate=0.0) if kind == "t5" else CONFIGS[kind](V)
    cls = AutoModelForSeq2SeqLM if cfg.is_encoder_decoder else AutoModelForCausalLM
    return cls.from_config(cfg).eval()


def drive(states: list, V: int, B: int = 5, P: int = 7, T: int = 6, steps: int = 40, seed: int = 0) -> dict:
    """Feed the same scripted observations to each state; return the worst log-prob / hidden differences to the
    first state and counts of what happened (refills mid-rollout, memoised rows, compactions)."""
    rng = np.random.default_rng(seed)

    def prompt() -> tuple[th.Tensor, th.Tensor]:
        n = int(rng.integers(1, P + 1))
        ids, mask = th.zeros(P, dtype=th.long), th.zeros(P, dtype=th.long)
        ids[P - n:] = th.as_tensor(rng.integers(3, V, n))
        ids[-1], mask[P - n:] = EOS, 1
        return ids, mask

    pid, pm = map(th.stack, zip(*[prompt() for _ in range(B)]))
    gen, glen = th.zeros((B, T), dtype=th.long), th.zeros(B, dtype=th.long)
    worst_lp = worst_h = 0.0
    counts = {"refills": 0, "memo_steps": 0}
    with th.no_grad():
        for step in range(steps):
            outs = [s(pid, pm, gen, glen) for s in states]
            lp0, h0 = outs[0][0].log_softmax(-1), outs[0][1]
            for lg, h in outs[1:]:
                worst_lp = max(worst_lp, float((lg.log_softmax(-1) - lp0).abs().max()))
                worst_h = max(worst_h, float((h - h0).abs().max()))
            # row 0 sometimes stays put (its observation repeats: a memoised row beside advancing ones)
            hold = step % 5 == 2
            counts["memo_steps"] += int(hold)
            for r in range(B):
                if r == 0 and hold:
                    continue
                if glen[r] >= T or rng.random() < 0.12:  # budget or an early end: auto-reset mid-rollout
                    pid[r], pm[r] = prompt()
                    gen[r], glen[r] = 0, 0
                    counts["refills"] += 1
                    continue
                gen[r, glen[r]] = int(rng.integers(2, V))
                glen[r] += 1
            if step == steps // 2:  # a foreign observation: a row jumps to an unrelated prefix
                gen[1, :3] = th.as_tensor(rng.integers(3, V, 3))
                glen[1] = 3
    return {"logprob": worst_lp, "hidden": worst_h, **counts}


@pytest.mark.parametrize("kind", ["t5", "gpt2", "llama"])
def test_static_cache_matches_dynamic_cache(kind):
    V = 40
    lm = make_model(kind, V)
    dyn = DecodeState(make_backend(lm, V))
    static = StaticDecodeState(make_backend(lm, V), compile="static", slack=3)  # compacts every 3 steps
    r = drive([dyn, static], V)
    assert r["refills"] >= 10 and r["memo_steps"] >= 5
    assert r["logprob"] < TOL and r["hidden"] < TOL, r
    # the buffers never grew: one allocation, S = span + slack slots
    (slots,) = static._slots.values()
    span = 7 if kind == "t5" else 7 + 6
    assert slots.mask.shape == (5, span + 3) and slots.S == span + 3


def test_static_cache_negative_control():
    """A refill that leaves the row's previous episode visible (its old slots not masked out) breaks the equality
    the tests rely on: the refill must be exact, not approximately right."""
    V = 40
    lm = make_model("gpt2", V)

    class Leaky(StaticDecodeState):
        def _write_rows(self, rows, cache, extra, new_mask):
            old = self.mask[rows].clone()
            super()._write_rows(rows, cache, extra, new_mask)
            self.mask[rows] |= old  # the stale slots of the previous episode stay attended

    r = drive([DecodeState(make_backend(lm, V)), Leaky(make_backend(lm, V), compile="static")], V, steps=20)
    assert r["refills"] >= 3 and r["logprob"] > 10 * TOL, r


def test_static_reset_keeps_buffers_and_refills_every_row():
    V = 40
    lm = make_model("t5", V)
    static = StaticDecodeState(make_backend(lm, V), compile="static")
    dyn = DecodeState(make_backend(lm, V))
    drive([dyn, static], V, steps=6)
    slots = static._cur
    keys_ptr = slots.cache.self_attention_cache.layers[0].keys.data_ptr()
    with th.no_grad():
        for p in lm.parameters():  # an update changed the weights: the policy resets its states
            p.add_(0.05 * th.randn_like(p))
    static.reset()
    dyn.reset()
    r = drive([dyn, static], V, steps=6, seed=1)
    assert r["logprob"] < TOL
    assert static._cur is slots and slots.cache.self_attention_cache.layers[0].keys.data_ptr() == keys_ptr


@pytest.fixture(scope="module")
def env():
    return make_vec_env(FakeCopyEnv, n_envs=4, seed=3, env_kwargs=dict(min_len=1, max_len=4))


def _policy_pair(env, kind: str, compile):
    V = int(env.action_space.n)
    lm = make_model(kind, V, seed=1)
    eager = LLMPolicy(env.observation_space, env.action_space, lambda _: 1e-3, model=lm)
    other = LLMPolicy(env.observation_space, env.action_space, lambda _: 1e-3, model=copy.deepcopy(lm),
                      compile=compile)
    other.value_head.load_state_dict(eager.value_head.state_dict())
    return eager, other


def _compare_rollout(env, eager: LLMPolicy, other: LLMPolicy, steps: int = 30) -> tuple[float, int]:
    """Step the env with the eager policy's actions; compare both policies' log-probs at every step."""
    obs = env.reset()
    rng = np.random.default_rng(0)
    worst, mid_resets = 0.0, 0
    with th.no_grad():
        for t in range(steps):
            o = eager.obs_to_tensor(obs)[0]
            lp_e = eager.get_distribution(o).distribution.logits
            lp_o = other.get_distribution(o).distribution.logits
            worst = max(worst, float((lp_e - lp_o).abs().max()))
            v_e, v_o = eager.predict_values(o), other.predict_values(o)
            worst = max(worst, float((v_e - v_o).abs().max()))
            actions = rng.integers(3, int(env.action_space.n), size=env.num_envs)
            actions[t % env.num_envs] = EOS if t % 3 == 0 else actions[t % env.num_envs]  # staggered ends
            obs, _, dones, _ = env.step(actions)
            mid_resets += int(dones.sum()) if not dones.all() else 0
    return worst, mid_resets


@pytest.mark.parametrize("kind", ["t5", "gpt2"])
def test_policy_static_cache_matches_eager_across_auto_resets(env, kind):
    eager, static = _policy_pair(env, kind, "static")
    worst, mid_resets = _compare_rollout(env, eager, static)
    assert mid_resets >= 5  # rows refilled while the others kept decoding
    assert worst < TOL
    assert isinstance(static._states["policy"], StaticDecodeState)
    assert type(eager._states["policy"]) is DecodeState


def test_compile_option_is_checked_and_saved(env, tmp_path):
    with pytest.raises(TextEnvsError, match="expected compile to be one of"):
        LLMPolicy(env.observation_space, env.action_space, lambda _: 1e-3, model=make_model("gpt2", 12),
                  compile="fast")
    model = PPO(LLMPolicy, env, n_steps=8, batch_size=32, n_epochs=1, seed=0,
                rollout_buffer_class=EpisodeRolloutBuffer,
                policy_kwargs=dict(model=make_model("gpt2", int(env.action_space.n)), compile="static"))
    model.learn(16)
    model.save(tmp_path / "m.zip")
    loaded = PPO.load(tmp_path / "m.zip", env=env)
    assert loaded.policy.compile == "static"


# --------------------------------------------------------------------------------------------------------
# compiled (inductor on CPU): expensive, one compile per model per module
# --------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def compiled_pairs(env):
    return {kind: _policy_pair(env, kind, True) for kind in ("t5", "gpt2")}


@pytest.mark.expensive
@pytest.mark.parametrize("kind", ["t5", "gpt2"])
def test_compiled_step_matches_eager_across_auto_resets(env, compiled_pairs, kind):
    import torch._dynamo

    eager, compiled = compiled_pairs[kind]
    torch._dynamo.utils.counters.clear()
    worst, mid_resets = _compare_rollout(env, eager, compiled)
    assert mid_resets >= 5 and worst < TOL
    state = compiled._states["policy"]
    assert state._cur.step_fn is not state._raw_step  # the step really went through torch.compile
    # one graph for the whole step: no graph break, no recompilation across refills and compactions
    assert not torch._dynamo.utils.counters["graph_break"], dict(torch._dynamo.utils.counters["graph_break"])


@pytest.mark.expensive
def test_compiled_ppo_rollout_log_probs_match_teacher_forced(env):
    """PPO with compile=True: the rollout's stored log-probs equal the teacher-forced ones of the update."""
    V = int(env.action_space.n)
    model = PPO(LLMPolicy, env, n_steps=12, batch_size=48, n_epochs=1, seed=0,
                rollout_buffer_class=EpisodeRolloutBuffer,
                policy_kwargs=dict(model=make_model("t5", V, seed=2), compile=True))
    from helpers import collect

    buf = collect(model, rollouts=2)
    with th.no_grad():
        for data in buf.get(48):
            _, log_prob, _ = model.policy.evaluate_actions(data.observations, data.actions)
            assert th.allclose(log_prob, data.old_log_prob, atol=TOL)


# --------------------------------------------------------------------------------------------------------
# the benchmark script (benchmarks/bench_compiled_rollout.py) at its smallest sizes
# --------------------------------------------------------------------------------------------------------
def _bench():
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import bench_compiled_rollout

    return bench_compiled_rollout


def _positive(x) -> bool:
    return isinstance(x, float) and np.isfinite(x) and x > 0


@pytest.mark.usefixtures("restore_torch_threads")  # the script sets torch's threads
def test_bench_compiled_rollout_quick_without_compile(capsys):
    res = _bench().main(["--quick", "--n-envs", "2", "--variants", "eager,static,generate", "--clock", "cpu"])
    out = capsys.readouterr().out
    (row,) = res["rows"]
    assert row["n_envs"] == 2 and row["model"] == "seq2seq shipped" and row["tokens"] == 2 * row["T"]
    for key in ("eager_tok_s", "static_tok_s", "generate_tok_s", "eager_vs_generate"):
        assert _positive(row[key]), (key, row)
    assert 0 < row["generate_tokens"] <= 2 * row["T"]  # real tokens: up to each row's EOS
    assert "eager tok/s" in out and "generate tok/s" in out and "compiled/eager" in out
    with pytest.raises(TextEnvsError, match="Did you mean 'compiled'"):
        _bench().main(["--quick", "--variants", "eager,compiledd"])


@pytest.mark.expensive  # compiles the step of two tiny models (inductor): about a minute on a loaded machine
@pytest.mark.usefixtures("restore_torch_threads")
def test_bench_compiled_rollout_gpu_configs_small(capsys):
    res = _bench().main(["--gpu", "--small", "--n-envs", "2", "--ppo-step", "--repeats", "1"])
    assert [r["model"] for r in res["rows"]] == ["seq2seq tiny", "causal tiny"] and not res["skipped"]
    for row in res["rows"]:
        for key in ("eager_tok_s", "static_tok_s", "compiled_tok_s", "generate_tok_s", "compiled_vs_eager",
                    "compiled_vs_generate", "eager_ppo_step_tok_s", "compiled_ppo_step_tok_s"):
            assert _positive(row[key]), (key, row)
    assert "PPO step compiled" in capsys.readouterr().out
