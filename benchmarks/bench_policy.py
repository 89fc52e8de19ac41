"""LLMPolicy speed, measured side by side in one run: rollout and update ratios, peak memory.

    python benchmarks/bench_policy.py                      # tiny default model, n_envs 8 and 16
    python benchmarks/bench_policy.py --preset t5-small    # a t5-small-sized random config (~60M parameters)
    python benchmarks/bench_policy.py --quick              # small smoke run (seconds)

Ratios (the issue's targets):

* rollout = tokens/s of PPO's ``collect_rollouts`` with LLMPolicy / tokens/s of Hugging Face ``generate`` on the
  same model (batch = n_envs, sampling on, fixed length); target >= 0.8. Also with the KL penalty on, and for
  the naive uncached policy (``use_cache=False``).
* update = time of one PPO epoch over the rollout / time of one supervised epoch (teacher-forced forward +
  backward + Adam step, same minibatches of whole episodes) over the same episodes; target <= 2.0.
* peak memory: process peak RSS (and CUDA peak allocation when on a GPU) of a ``learn()`` run.

EOS is suppressed on both sides so every episode has exactly ``--output`` tokens: the env maps an EOS action to
``<unk>`` (same cost for the policy), ``generate`` gets ``min_new_tokens``.
"""

from __future__ import annotations

import argparse
import resource
import time

import gymnasium as gym
import numpy as np
import torch as th


class NoEOS(gym.ActionWrapper):
    """Map the EOS action to <unk> so that episodes run to the token budget."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        self.eos = env.unwrapped.tokenizer.eos_token_id
        self.unk = env.unwrapped.tokenizer.unk_token_id or 2

    def action(self, action):
        return self.unk if int(action) == self.eos else action


def model_spec(preset: str, V: int):
    from sb3_ext import tiny_t5_config

    if preset == "tiny":
        return tiny_t5_config(V)
    if preset == "t5-small":
        return tiny_t5_config(32128, d_model=512, d_kv=64, d_ff=2048, num_layers=6, num_decoder_layers=6,
                              num_heads=8, relative_attention_num_buckets=32, relative_attention_max_distance=128)
    raise SystemExit(f"unknown preset {preset!r}: expected 'tiny' or 't5-small'")


def make_env(n_envs: int, prompt: int, output: int, seed: int = 0):
    from stable_baselines3.common.env_util import make_vec_env

    import text_envs  # noqa: F401

    return make_vec_env("TextSummarization-v0", n_envs=n_envs, seed=seed, wrapper_class=NoEOS,
                        env_kwargs=dict(max_prompt_tokens=prompt, max_new_tokens=output))


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def build(env, spec, steps: int, batch_size: int, **policy_kwargs):
    from stable_baselines3 import PPO

    from sb3_ext import EpisodeRolloutBuffer, LLMPolicy

    return PPO(LLMPolicy, env, n_steps=steps, batch_size=batch_size, n_epochs=1, seed=0, device="cpu"
               if not th.cuda.is_available() else "cuda", rollout_buffer_class=EpisodeRolloutBuffer,
               policy_kwargs=dict(model=spec, **policy_kwargs))


def time_rollout(model, steps: int) -> float:
    """Tokens/s of collect_rollouts (after a short warm-up)."""
    from stable_baselines3.common.callbacks import BaseCallback

    class Nop(BaseCallback):
        def _on_step(self) -> bool:
            return True

    _, cb = model._setup_learn(10**9, Nop())
    cb.on_training_start(locals(), globals())
    model.collect_rollouts(model.env, cb, model.rollout_buffer, min(4, steps))  # warm-up
    model.policy.reset_cache()
    model._last_obs = model.env.reset()
    model._last_episode_starts = np.ones(model.env.num_envs, dtype=bool)
    sync()
    t = time.perf_counter()
    model.collect_rollouts(model.env, cb, model.rollout_buffer, model.n_steps)
    sync()
    return model.n_steps * model.env.num_envs / (time.perf_counter() - t)


def sync() -> None:
    if th.cuda.is_available():
        th.cuda.synchronize()


@th.no_grad()
def time_generate(model, env, output: int) -> float:
    """Tokens/s of HF generate on the same LM, batch = n_envs, sampling, exactly ``output`` new tokens."""
    policy = model.policy
    obs = env.reset()
    ids = th.as_tensor(obs["prompt_ids"], device=policy.device)
    mask = th.as_tensor(obs["prompt_mask"], device=policy.device)
    kw = dict(do_sample=True, max_new_tokens=output, min_new_tokens=output, top_k=0, top_p=1.0)
    policy.model.generate(input_ids=ids, attention_mask=mask, **{**kw, "max_new_tokens": 4, "min_new_tokens": 4})
    sync()
    t = time.perf_counter()
    out = policy.model.generate(input_ids=ids, attention_mask=mask, **kw)
    sync()
    new = out.shape[1] - (1 if policy.backend.kind == "seq2seq" else ids.shape[1])
    return ids.shape[0] * new / (time.perf_counter() - t)


def time_update(model) -> tuple[float, float, float]:
    """(PPO epoch seconds, supervised epoch seconds, mean episodes per minibatch) over the same buffer."""
    policy, buf = model.policy, model.rollout_buffer
    sync()
    t = time.perf_counter()
    model.train()  # n_epochs=1
    sync()
    ppo = time.perf_counter() - t
    opt = th.optim.Adam(policy.parameters(), lr=1e-5)
    policy.set_training_mode(True)
    episodes = []
    sync()
    t = time.perf_counter()
    for data in buf.get(model.batch_size):
        batch = data.observations
        episodes.append(batch.num_episodes)
        logits, _, _ = policy.episode_outputs(batch)
        loss = th.nn.functional.cross_entropy(logits.float(), data.actions.long().flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
    sync()
    return ppo, time.perf_counter() - t, float(np.mean(episodes))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="tiny", choices=["tiny", "t5-small"], help="model size")
    parser.add_argument("--n-envs", type=int, nargs="+", default=[8, 16], help="numbers of envs to measure")
    parser.add_argument("--prompt", type=int, default=256, help="prompt tokens (max_prompt_tokens)")
    parser.add_argument("--output", type=int, default=64, help="generated tokens per episode (EOS suppressed)")
    parser.add_argument("--episodes-per-batch", type=int, default=8, help="episodes per PPO minibatch")
    parser.add_argument("--naive-steps", type=int, default=16, help="rollout steps timed for the uncached policy")
    parser.add_argument("--quick", action="store_true", help="n_envs 4, prompt 64, output 16: a smoke run")
    args = parser.parse_args()
    if args.quick:
        args.n_envs, args.prompt, args.output, args.naive_steps = [4], 64, 16, 8
    th.manual_seed(0)
    print(f"preset={args.preset} prompt={args.prompt} output={args.output} device="
          f"{'cuda' if th.cuda.is_available() else 'cpu'} threads={th.get_num_threads()}")
    for n_envs in args.n_envs:
        env = make_env(n_envs, args.prompt, args.output)
        V = int(env.action_space.n)
        spec = model_spec(args.preset, V)
        steps = 2 * args.output  # two full episodes per env
        batch = args.episodes_per_batch * args.output
        rss0 = peak_rss_mb()
        model = build(env, spec, steps, batch)
        n_params = sum(p.numel() for p in model.policy.parameters())
        gen = time_generate(model, env, args.output)
        roll = time_rollout(model, steps)
        ppo_s, sup_s, eps = time_update(model)
        state = model.policy.state_dict()
        kl_model = build(env, spec, steps, batch, kl_coef=0.05)
        kl_model.policy.load_state_dict(state, strict=False)  # its reference keeps its own weights
        roll_kl = time_rollout(kl_model, steps)
        naive = build(env, spec, args.naive_steps, batch, use_cache=False)
        naive.policy.load_state_dict(state)
        roll_naive = time_rollout(naive, args.naive_steps)
        if th.cuda.is_available():
            th.cuda.reset_peak_memory_stats()
        learn_model = build(env, spec, steps, batch)
        learn_model.learn(steps * n_envs)
        gpu = f", CUDA peak {th.cuda.max_memory_allocated() / 2**20:.0f} MiB" if th.cuda.is_available() else ""
        print(
            f"n_envs={n_envs:3d} params={n_params / 1e6:.1f}M | generate {gen:8.1f} tok/s | rollout {roll:8.1f} tok/s "
            f"ratio {roll / gen:.2f} (target >= 0.8) | with KL {roll_kl / gen:.2f} | naive uncached "
            f"{roll_naive / gen:.3f} | update PPO epoch {ppo_s:.2f}s / supervised {sup_s:.2f}s = "
            f"{ppo_s / sup_s:.2f} (target <= 2.0, {eps:.1f} episodes/minibatch) | peak RSS "
            f"{peak_rss_mb():.0f} MiB (+{peak_rss_mb() - rss0:.0f}){gpu}",
            flush=True,
        )
        del model, kl_model, naive, learn_model
        env.close()


if __name__ == "__main__":
    main()
