"""How the cost of PPO with LLMPolicy grows: with n_envs, generated length, prompt length; and its memory.

    python benchmarks/bench_scaling.py                  # floor, n_envs, length, prompt: ~10 min on a loaded 2-core CPU
    python benchmarks/bench_scaling.py --tables memory  # the memory table: 7 fresh processes, ~6 min
    python benchmarks/bench_scaling.py --quick --tables all   # every table at a tiny size, about a minute
    python benchmarks/bench_scaling.py --tables length --arch seq2seq

Tables (each row measured side by side in this run; the machine is shared, so read the ratios):

* ``floor``: for each model size (tiny, 7M, 60M) and architecture, rollout tokens/s ÷ ``generate`` tokens/s and
  one PPO epoch ÷ one supervised epoch over the same episodes (:func:`floor_ratios`).
* ``envs``: rollout tokens/s of ``PPO.collect_rollouts`` with 1..32 envs, beside Hugging Face ``generate``
  tokens/s at the same batch, prompt and length (the floor); ``rollout/generate`` is their ratio.
* ``length``: cost per generated token (microseconds) of the rollout, of the PPO update and of ``generate``
  for ``T`` = 16..256, and each divided by its ``T=16`` value: a flat column (about 1) is the claim
  "cost per token does not grow with length".
* ``prompt``: the same for prompt lengths ``P`` = 64..1024 (documents are joined to fill ``P``).
* ``memory``: peak resident memory of a training run (two rollouts and updates, in a fresh child process)
  for each model size, and its growth with n_envs and with ``P``; then the rollout buffer's own bytes
  beside SB3's stock ``DictRolloutBuffer`` at the issue's size (P=1024, T=256, 32 envs, 2048 steps).

The helpers here (model configs, env and PPO builders, timers, the ``generate`` floor and the supervised
epoch) are imported by ``bench_trl.py`` and ``gpu_check.py``.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

HERE = os.path.dirname(os.path.abspath(__file__))

# --------------------------------------------------------------------------------------------------------
# model configs (random weights, built from configs: never fetched by name)
# --------------------------------------------------------------------------------------------------------
SIZES = ("tiny", "7m", "60m", "220m", "0.5b")
ARCHS = ("causal", "seq2seq")

# GPT-2 style causal configs: (n_embd, n_layer, n_head). Llama/Qwen-style for the 0.5B GPU size.
_CAUSAL = {"tiny": (64, 2, 4), "7m": (320, 4, 5), "60m": (576, 14, 9), "220m": (768, 30, 12)}
# T5 configs: (d_model, d_ff, layers, heads, d_kv). "60m" and "220m" are t5-small's and t5-base's shapes with a
# wider feed-forward, so that at the shipped 4,000-token vocabulary they keep t5-small's 60M and t5-base's 220M
# parameters (their 32k-token embeddings hold 16M and 25M of them).
_T5 = {
    "tiny": (64, 128, 2, 4, 16),
    "7m": (256, 1024, 3, 4, 64),
    "60m": (512, 3072, 6, 8, 64),
    "220m": (768, 3584, 12, 12, 64),
    "0.5b": (1024, 4096, 18, 16, 64),
}


def model_config(size: str, arch: str, vocab_size: int, max_positions: int = 2048, pad_token_id: int = 0,
                 eos_token_id: int = 1) -> Any:
    """A transformers config of a named size.

    :param size: one of :data:`SIZES`: about 0.5M, 7M, 60M, 220M, 0.5B parameters at ``V = 4000`` (seq2seq
        ``"60m"``/``"220m"``: t5-small/t5-base shapes; causal: GPT-2 shapes, ``"0.5b"`` a Qwen2 shape)
    :param arch: ``"causal"`` (GPT-2 / Qwen2) or ``"seq2seq"`` (T5)
    :param vocab_size: the action space's ``V``
    :param max_positions: position table size of causal models (must cover ``P + T``)
    """
    from text_envs.errors import unknown_name

    if arch not in ARCHS:
        raise unknown_name("arch", arch, ARCHS)
    if size not in SIZES:
        raise unknown_name("model size", size, SIZES)
    if arch == "seq2seq":
        from transformers import T5Config

        d, ff, layers, heads, dkv = _T5[size]
        return T5Config(
            vocab_size=vocab_size, d_model=d, d_ff=ff, num_layers=layers, num_decoder_layers=layers, num_heads=heads,
            d_kv=dkv, dropout_rate=0.0, pad_token_id=pad_token_id, eos_token_id=eos_token_id,
            decoder_start_token_id=pad_token_id, tie_word_embeddings=size != "tiny",
        )
    if size == "0.5b":
        from transformers import Qwen2Config

        return Qwen2Config(
            vocab_size=vocab_size, hidden_size=1024, intermediate_size=5888, num_hidden_layers=24,
            num_attention_heads=16, num_key_value_heads=2, max_position_embeddings=max(max_positions, 4096),
            tie_word_embeddings=True, pad_token_id=pad_token_id, eos_token_id=eos_token_id, bos_token_id=eos_token_id,
        )
    from transformers import GPT2Config

    d, layers, heads = _CAUSAL[size]
    return GPT2Config(
        vocab_size=vocab_size, n_embd=d, n_layer=layers, n_head=heads, n_positions=max_positions,
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, pad_token_id=pad_token_id, eos_token_id=eos_token_id,
        bos_token_id=eos_token_id,
    )


def build_model(size: str, arch: str, tokenizer: Any, max_positions: int = 2048, seed: int = 0,
                dtype: Any = None) -> Any:
    """A randomly initialised LM of a named size, seeded (the same seed gives the same weights)."""
    import torch as th
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM

    cfg = model_config(size, arch, len(tokenizer), max_positions, tokenizer.pad_token_id, tokenizer.eos_token_id)
    th.manual_seed(seed)
    cls = AutoModelForSeq2SeqLM if arch == "seq2seq" else AutoModelForCausalLM
    model = cls.from_config(cfg)
    if dtype is not None:
        model = model.to(dtype)
    return model.eval()


def n_params(model: Any) -> int:
    return sum(p.numel() for p in model.parameters())


# --------------------------------------------------------------------------------------------------------
# data and envs
# --------------------------------------------------------------------------------------------------------
def summary_rows(n: int, split: str = "train", min_tokens: int = 0, tokenizer: Any = None, start: int = 0) -> list[dict]:
    """``n`` rows ``{"document", "summary"}`` of the embedded summarization data.

    :param min_tokens: join consecutive documents until each has at least this many tokens (long prompts)
    """
    from text_envs.data.generators import summarization_row

    rows, i = [], start
    for _ in range(n):
        row = dict(summarization_row(split, i))
        i += 1
        if min_tokens:
            while len(tokenizer(row["document"], add_special_tokens=False, verbose=False)["input_ids"]) < min_tokens:
                row["document"] += " " + summarization_row(split, i)["document"]
                i += 1
        rows.append(row)
    return rows


def make_env(rows: list[dict], tokenizer: Any, P: int, T: int, reward: Any = "rouge-l") -> Any:
    import gymnasium as gym
    from stable_baselines3.common.monitor import Monitor

    import text_envs  # noqa: F401  (registers the envs)

    env = gym.make("TextSummarization-v0", dataset=rows, tokenizer=tokenizer, max_prompt_tokens=P,
                   max_new_tokens=T, reward=reward)
    return Monitor(env)


def make_vec_env(rows: list[dict], tokenizer: Any, P: int, T: int, n_envs: int, seed: int = 0,
                 wrapper: Callable[[Any], Any] | None = None) -> Any:
    """``n_envs`` summarization envs over ``rows`` (each in a ``Monitor``, then in ``wrapper`` if given)."""
    from stable_baselines3.common.vec_env import DummyVecEnv

    wrap = wrapper or (lambda env: env)
    venv = DummyVecEnv([lambda: wrap(make_env(rows, tokenizer, P, T)) for _ in range(n_envs)])
    venv.seed(seed)
    return venv


def make_ppo(venv: Any, model: Any, tokenizer: Any, n_steps: int, batch_size: int | None = None,
             kl_coef: float = 0.0, learning_rate: float = 1e-4, seed: int = 0, device: str = "cpu",
             n_epochs: int = 1, dtype: str | None = None, max_grad_norm: float = 0.5, gae_lambda: float = 0.95,
             value_mode: str = "shared") -> Any:
    """Stock ``stable_baselines3.PPO`` with ``LLMPolicy`` and ``EpisodeRolloutBuffer``.

    :param batch_size: tokens per minibatch (``None``: the whole rollout, one gradient step per epoch)
    """
    from stable_baselines3 import PPO

    from sb3_ext import EpisodeRolloutBuffer, LLMPolicy

    rollout = n_steps * venv.num_envs
    kwargs = dict(model=model, tokenizer=tokenizer, kl_coef=kl_coef, value_mode=value_mode)
    if dtype is not None:
        kwargs["dtype"] = dtype
    return PPO(
        LLMPolicy, venv, rollout_buffer_class=EpisodeRolloutBuffer, n_steps=n_steps,
        batch_size=batch_size or rollout, n_epochs=n_epochs, learning_rate=learning_rate, gamma=1.0, gae_lambda=gae_lambda,
        max_grad_norm=max_grad_norm, seed=seed, device=device, verbose=0, policy_kwargs=kwargs,
    )


def env_prompts(venv: Any, n: int) -> tuple[Any, Any]:
    """The first ``n`` prompts of the env's data as the ``(prompt_ids, prompt_mask)`` tensors of an observation."""
    import torch as th

    env = venv.envs[0].unwrapped
    ids, masks = zip(*(env.encode_prompt(env.example_text(i % env.num_examples)[0]) for i in range(n)))
    return th.as_tensor(np.stack(ids)), th.as_tensor(np.stack(masks))


# --------------------------------------------------------------------------------------------------------
# timing
# --------------------------------------------------------------------------------------------------------
class CallTimer:
    """Wrap a callable and add up the wall time of its calls (``calls``, ``total``, ``last``)."""

    def __init__(self, fn: Callable, sync: Callable[[], None] | None = None):
        self.fn, self.sync = fn, sync
        self.calls, self.total, self.last = 0, 0.0, 0.0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        out = self.fn(*args, **kwargs)
        if self.sync is not None:
            self.sync()  # device work is asynchronous: wait for it before reading the clock
        self.last = time.perf_counter() - start
        self.total += self.last
        self.calls += 1
        return out

    def reset(self) -> None:
        self.calls, self.total, self.last = 0, 0.0, 0.0


def cuda_sync(device: str) -> Callable[[], None] | None:
    if not str(device).startswith("cuda"):
        return None
    import torch as th

    return th.cuda.synchronize


@dataclass
class PPOTimers:
    """Where the time of ``PPO.learn`` goes (see :func:`instrument_ppo`)."""

    collect: CallTimer
    train: CallTimer
    forward: CallTimer
    env_step: CallTimer
    reward: CallTimer
    returns: CallTimer
    episodes: list = field(default_factory=list)  # (timesteps when finished, episode reward, length)

    def reset(self) -> None:
        for t in (self.collect, self.train, self.forward, self.env_step, self.reward, self.returns):
            t.reset()

    def breakdown(self) -> dict[str, float]:
        """Seconds per part; ``sb3_bookkeeping`` is what ``collect_rollouts`` spends outside the policy forward,
        the env step (reward included) and the KL/GAE pass: tensor conversion, buffer ``add``, callbacks."""
        rest = self.collect.total - self.forward.total - self.env_step.total - self.returns.total
        return {
            "rollout_forward": self.forward.total,
            "env_step": self.env_step.total - self.reward.total,
            "reward": self.reward.total,
            "kl_ref_gae": self.returns.total,
            "update": self.train.total,
            "sb3_bookkeeping": max(rest, 0.0),
        }


def instrument_ppo(ppo: Any) -> PPOTimers:
    """Wrap the parts of a PPO instance with timers (instance attributes: the classes are untouched)."""
    sync = cuda_sync(str(ppo.device))
    timers = PPOTimers(
        collect=CallTimer(ppo.collect_rollouts, sync), train=CallTimer(ppo.train, sync),
        forward=CallTimer(ppo.policy.forward, sync), env_step=CallTimer(ppo.env.step_wait),
        reward=CallTimer(lambda *a, **k: None), returns=CallTimer(ppo.rollout_buffer.compute_returns_and_advantage, sync),
    )
    ppo.collect_rollouts, ppo.train = timers.collect, timers.train
    ppo.policy.forward = timers.forward
    ppo.env.step_wait = timers.env_step
    ppo.rollout_buffer.compute_returns_and_advantage = timers.returns
    for env in ppo.env.envs:  # one timer for the reward objects of all envs
        base = env.unwrapped
        if base.reward is not None:
            base.reward = _TimedInto(timers.reward, base.reward)
    return timers


class _TimedInto:
    """Proxy of a reward object: ``__call__`` and ``compute`` add their wall time to a :class:`CallTimer`."""

    def __init__(self, timer: CallTimer, reward: Any):
        self.timer, self.inner = timer, reward

    def _timed(self, fn: Callable, *args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        out = fn(*args, **kwargs)
        self.timer.total += time.perf_counter() - start
        self.timer.calls += 1
        return out

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._timed(self.inner, *args, **kwargs)

    def compute(self, *args: Any, **kwargs: Any) -> Any:
        return self._timed(self.inner.compute, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def episode_logger(timers: PPOTimers) -> Any:
    """An SB3 callback that records (timesteps, episode reward, length) of every finished episode."""
    from stable_baselines3.common.callbacks import BaseCallback

    class _EpisodeLog(BaseCallback):
        def _on_step(self) -> bool:
            for info in self.locals["infos"]:
                ep = info.get("episode")
                if ep is not None:
                    timers.episodes.append((self.num_timesteps, float(ep["r"]), int(ep["l"])))
            return True

    return _EpisodeLog()


# --------------------------------------------------------------------------------------------------------
# the floor: Hugging Face generate and a supervised epoch over the same episodes
# --------------------------------------------------------------------------------------------------------
def generate_seconds(model: Any, prompt_ids: Any, prompt_mask: Any, T: int, device: str = "cpu") -> float:
    """Wall time of one ``model.generate`` sampling exactly ``T`` tokens for each left-padded prompt."""
    import torch as th

    ids, mask = prompt_ids.to(device), prompt_mask.to(device)
    sync = cuda_sync(device)
    cfg = model.generation_config
    start = time.perf_counter()
    with th.no_grad():
        model.generate(
            input_ids=ids, attention_mask=mask, max_new_tokens=T, min_new_tokens=T, do_sample=True, top_k=0,
            top_p=1.0, temperature=1.0, pad_token_id=cfg.pad_token_id if cfg.pad_token_id is not None else 0,
            eos_token_id=model.config.eos_token_id,
        )
    if sync is not None:
        sync()
    return time.perf_counter() - start


def supervised_epoch_seconds(model: Any, buffer: Any, batch_size: int, lr: float = 1e-4, max_grad_norm: float = 0.5,
                             device: str = "cpu") -> float:
    """One supervised epoch (teacher-forced cross-entropy, backward, Adam step) over a rollout's episodes.

    The minibatches are the rollout buffer's segments grouped by about ``batch_size`` tokens, as
    ``EpisodeRolloutBuffer.get(batch_size)`` groups them for the PPO epoch this is compared with.
    """
    import torch as th

    params = [p for p in model.parameters() if p.requires_grad]
    opt = th.optim.Adam(params, lr=lr, eps=1e-5)
    groups = buffer.minibatch_groups(batch_size, np.random.default_rng(0).permutation(buffer.num_segments))
    seq2seq = bool(getattr(model.config, "is_encoder_decoder", False))
    sync = cuda_sync(device)
    model.train()
    start = time.perf_counter()
    for segs in groups:
        batch, _ = buffer.episode_batch(np.asarray(segs))
        tokens = batch.tokens.to(device)  # (E, L)
        lens = th.as_tensor([buffer.seg_t0[s] + buffer.seg_len[s] for s in segs], device=device)
        tmask = (th.arange(tokens.shape[1], device=device)[None] < lens[:, None]).long()  # (E, L)
        labels = tokens.masked_fill(tmask == 0, -100)
        pids, pmask = batch.prompt_ids.to(device), batch.prompt_mask.to(device)
        if seq2seq:
            out = model(input_ids=pids, attention_mask=pmask, labels=labels)
            loss = out.loss
        else:
            L = tokens.shape[1]
            ids = th.cat([pids, tokens], 1)  # (E, P + L)
            mask = th.cat([pmask, tmask], 1)
            pos = (mask.cumsum(1) - 1).clamp(min=0)
            # logits of the last L+1 positions only (the prompt's are not trained), as an efficient SFT does
            logits = model(input_ids=ids, attention_mask=mask, position_ids=pos, logits_to_keep=L + 1).logits
            logits = logits[:, :-1]  # (E, L, V): position P-1+t predicts token t
            loss = th.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1),
                                                  ignore_index=-100)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        th.nn.utils.clip_grad_norm_(params, max_grad_norm)
        opt.step()
    if sync is not None:
        sync()
    model.eval()
    return time.perf_counter() - start


def floor_ratios(size: str, arch: str, tokenizer: Any, n_envs: int = 8, P: int = 128, T: int = 32,
                 episodes_per_env: int = 2, device: str = "cpu", dtype: str | None = None,
                 batch_tokens: int | None = None, kl_coef: float = 0.0, seed: int = 0, repeats: int = 2) -> dict[str, float]:
    """The two floor ratios of one model, measured side by side (interleaved, best of ``repeats``).

    * ``rollout_vs_generate``: rollout tokens/s of ``PPO.collect_rollouts`` divided by ``generate`` tokens/s at
      the same batch (``n_envs``), prompt length and ``T`` (1.0 = as fast as ``generate``);
    * ``ppo_vs_supervised``: one PPO epoch's seconds divided by one supervised epoch's seconds over the same
      episodes and minibatches (1.0 = PPO costs no more than supervised fine-tuning).
    """
    rows = summary_rows(max(64, n_envs * episodes_per_env * 2), tokenizer=tokenizer,
                        min_tokens=P if P > 128 else 0)
    model = build_model(size, arch, tokenizer, max_positions=max(2048, P + T + 8), seed=seed)
    venv = make_vec_env(rows, tokenizer, P, T, n_envs, seed)
    n_steps = T * episodes_per_env
    ppo = make_ppo(venv, model, tokenizer, n_steps, batch_tokens, kl_coef=kl_coef, seed=seed, device=device,
                   dtype=dtype)
    lm = ppo.policy.model
    timers = instrument_ppo(ppo)
    ids, mask = env_prompts(venv, n_envs)
    rollout_s, ppo_epoch_s, gen_s, parts = _interleaved(ppo, timers, n_steps * n_envs, lambda: sum(
        generate_seconds(lm, ids, mask, T, device) for _ in range(episodes_per_env)), repeats)
    tokens = n_steps * n_envs
    sup_s = min(supervised_epoch_seconds(lm, ppo.rollout_buffer, batch_tokens or tokens, device=device) for _ in range(2))
    venv.close()
    return {
        "params_m": n_params(lm) / 1e6,
        "rollout_tok_s": tokens / rollout_s,
        "generate_tok_s": tokens / gen_s,
        "rollout_vs_generate": (tokens / rollout_s) / (tokens / gen_s),
        "ppo_epoch_s": ppo_epoch_s,
        "supervised_epoch_s": sup_s,
        "ppo_vs_supervised": ppo_epoch_s / sup_s,
        **{f"share_{k}": v / max(rollout_s + ppo_epoch_s, 1e-9) for k, v in parts.items()},
    }


# --------------------------------------------------------------------------------------------------------
# memory
# --------------------------------------------------------------------------------------------------------
def _proc_status_mb(key: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def rss_mb() -> float:
    """Current resident set size (MiB)."""
    return _proc_status_mb("VmRSS")


def peak_rss_mb() -> float:
    """Peak resident set size of this process's address space (MiB).

    ``VmHWM`` starts afresh at ``exec``; ``getrusage``'s ``ru_maxrss`` would carry the parent's peak into a child
    started with ``fork``.
    """
    hwm = _proc_status_mb("VmHWM")
    return hwm if math.isfinite(hwm) else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def memory_child(size: str, arch: str, n_envs: int, P: int, T: int, n_steps: int, seed: int = 0) -> dict[str, float]:
    """A training run (two rollouts and updates) in this process; RSS before ``learn`` and peak after."""
    import torch as th

    from text_envs.tokenization import load_tokenizer

    th.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    tok = load_tokenizer()
    rows = summary_rows(max(32, 2 * n_envs), tokenizer=tok, min_tokens=P if P > 128 else 0)
    model = build_model(size, arch, tok, max_positions=max(2048, P + T + 8), seed=seed)
    venv = make_vec_env(rows, tok, P, T, n_envs, seed)
    ppo = make_ppo(venv, model, tok, n_steps, kl_coef=0.05, seed=seed)
    before = rss_mb()
    peak_before = peak_rss_mb()
    ppo.learn(2 * n_steps * n_envs)
    buf = ppo.rollout_buffer
    return {
        "params_m": n_params(ppo.policy.model) / 1e6,
        "rss_before_learn_mb": before,
        "peak_mb": peak_rss_mb(),
        "growth_mb": peak_rss_mb() - max(before, peak_before),
        "buffer_mb": buffer_bytes(buf) / 2**20,
    }


def run_memory_child(size: str, arch: str, n_envs: int, P: int, T: int, n_steps: int, timeout: float = 600) -> dict:
    """:func:`memory_child` in a fresh interpreter, so that each peak is its own."""
    cmd = [sys.executable, os.path.abspath(__file__), "--memory-child",
           json.dumps(dict(size=size, arch=arch, n_envs=n_envs, P=P, T=T, n_steps=n_steps))]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=os.path.dirname(HERE))
    if out.returncode != 0:
        raise RuntimeError(f"memory child failed ({' '.join(cmd[-1:])}):\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def buffer_bytes(buf: Any) -> int:
    """Bytes held by a rollout buffer's arrays (numpy arrays, dicts and lists of them)."""
    total = 0
    for value in vars(buf).values():
        if isinstance(value, np.ndarray):
            total += value.nbytes
        elif isinstance(value, dict):
            total += sum(v.nbytes for v in value.values() if isinstance(v, np.ndarray))
        elif isinstance(value, list) and value and isinstance(value[0], np.ndarray):
            total += sum(v.nbytes for v in value)
    return total


def buffer_comparison(P: int = 1024, T: int = 256, n_envs: int = 32, n_steps: int = 2048, fill_steps: int | None = None,
                      seed: int = 0) -> dict[str, float]:
    """Bytes of SB3's stock ``DictRolloutBuffer`` and of ``EpisodeRolloutBuffer`` for one rollout at this size.

    The stock buffer's arrays are allocated in full at ``reset`` (its size does not depend on the data). The
    episode buffer is filled with ``fill_steps`` steps of synthetic episodes that run to the budget ``T`` (the
    most segments: the worst case for it) and its bytes are scaled to ``n_steps``.
    """
    import torch as th
    from gymnasium import spaces
    from stable_baselines3.common.buffers import DictRolloutBuffer

    from sb3_ext import EpisodeRolloutBuffer

    V = 4000
    obs_space = spaces.Dict({
        "prompt_ids": spaces.Box(0, V - 1, (P,), np.int64), "prompt_mask": spaces.Box(0, 1, (P,), np.int64),
        "generated_ids": spaces.Box(0, V - 1, (T,), np.int64), "generated_mask": spaces.Box(0, 1, (T,), np.int64),
    })
    act_space = spaces.Discrete(V)
    stock = DictRolloutBuffer(n_steps, obs_space, act_space, device="cpu", n_envs=n_envs)
    stock_bytes = buffer_bytes(stock)
    del stock
    fill = min(n_steps, max(fill_steps or n_steps, T))  # at least one whole episode per env
    ep = EpisodeRolloutBuffer(fill, obs_space, act_space, device="cpu", n_envs=n_envs)
    rng = np.random.default_rng(seed)
    prompt = rng.integers(2, V, size=(n_envs, P))
    gen = np.zeros((n_envs, T), dtype=np.int64)
    gmask = np.zeros((n_envs, T), dtype=np.int64)
    t = np.zeros(n_envs, dtype=np.int64)
    zeros = th.zeros(n_envs)
    for _ in range(fill):
        obs = {"prompt_ids": prompt, "prompt_mask": np.ones_like(prompt), "generated_ids": gen, "generated_mask": gmask}
        action = rng.integers(2, V, size=n_envs)
        ep.add(obs, action, np.zeros(n_envs, np.float32), (t == 0).astype(np.float32), zeros, zeros)
        gen[np.arange(n_envs), t] = action
        gmask[np.arange(n_envs), t] = 1
        t += 1
        done = t >= T
        if done.any():
            gen[done], gmask[done], t[done] = 0, 0, 0
            prompt[done] = rng.integers(2, V, size=(int(done.sum()), P))
    ep_bytes = buffer_bytes(ep) * n_steps / fill
    return {"stock_dict_mb": stock_bytes / 2**20, "episode_mb": ep_bytes / 2**20, "ratio": stock_bytes / ep_bytes}


# --------------------------------------------------------------------------------------------------------
# the tables
# --------------------------------------------------------------------------------------------------------
@dataclass
class Settings:
    arch: str = "causal"
    size: str = "tiny"
    n_envs_list: Sequence[int] = (1, 2, 4, 8, 16, 32)
    lengths: Sequence[int] = (16, 32, 64, 128, 256)
    prompts: Sequence[int] = (64, 128, 256, 512, 1024)
    min_tokens: int = 1024  # tokens per measured rollout (more steps for few envs / short texts)
    repeats: int = 2  # interleaved rollout/generate repetitions, best of
    base_envs: int = 8
    base_P: int = 128
    base_T: int = 32
    floor_sizes: Sequence[str] = ("tiny", "7m", "60m")
    floor_archs: Sequence[str] = ("seq2seq", "causal")
    mem_sizes: Sequence[str] = ("tiny", "7m", "60m")
    mem_envs: Sequence[int] = (1, 8, 32)
    mem_prompts: Sequence[int] = (64, 256, 1024)
    mem_T: int = 32
    mem_steps: int = 32
    buffer_fill: int = 256


QUICK = Settings(n_envs_list=(1, 4), lengths=(16, 32), prompts=(64, 256), min_tokens=128, repeats=1, base_envs=4,
                 floor_sizes=("tiny",), mem_sizes=("tiny",), mem_envs=(1, 4), mem_prompts=(128,), mem_steps=16,
                 buffer_fill=64)


def _interleaved(ppo: Any, timers: PPOTimers, steps: int, generate: Callable[[], float],
                 repeats: int) -> tuple[float, float, float, dict[str, float]]:
    """Warm up, then alternate one ``learn`` (rollout + update) and one ``generate`` pass ``repeats`` times.

    Returns the best (smallest) rollout, update and generate seconds and the breakdown of the best rollout:
    on a shared machine the minimum is the measurement least disturbed by other processes, and alternating
    exposes both sides to the same disturbances.
    """
    ppo.learn(steps)  # warm-up rollout + update (first-call costs)
    generate()  # warm-up
    best: tuple[float, float, dict[str, float]] | None = None
    gen_best = float("inf")
    for _ in range(max(1, repeats)):
        timers.reset()
        ppo.learn(steps, reset_num_timesteps=False)
        if best is None or timers.collect.total < best[0]:
            best = (timers.collect.total, timers.train.total, timers.breakdown())
        else:
            best = (best[0], min(best[1], timers.train.total), best[2])
        gen_best = min(gen_best, generate())
    assert best is not None
    return best[0], best[1], gen_best, best[2]


def measure_point(tok: Any, s: Settings, n_envs: int, P: int, T: int, seed: int = 0) -> dict[str, float]:
    """Rollout, update and ``generate`` seconds per generated token at one (n_envs, P, T)."""
    episodes = max(1, math.ceil(s.min_tokens / (n_envs * T)))
    n_steps = T * episodes
    rows = summary_rows(max(32, 2 * n_envs * episodes), tokenizer=tok, min_tokens=P if P > 128 else 0)
    model = build_model(s.size, s.arch, tok, max_positions=max(2048, P + T + 8), seed=seed)
    venv = make_vec_env(rows, tok, P, T, n_envs, seed)
    ppo = make_ppo(venv, model, tok, n_steps, seed=seed)
    timers = instrument_ppo(ppo)
    tokens = n_steps * n_envs
    ids, mask = env_prompts(venv, n_envs)
    lm = ppo.policy.model
    collect_s, train_s, gen_s, parts = _interleaved(
        ppo, timers, tokens, lambda: sum(generate_seconds(lm, ids, mask, T) for _ in range(episodes)), s.repeats)
    sup_s = min(supervised_epoch_seconds(lm, ppo.rollout_buffer, tokens) for _ in range(2))  # 1st: warm-up
    venv.close()
    return {
        "n_envs": n_envs, "P": P, "T": T, "tokens": tokens,
        "rollout_tok_s": tokens / collect_s,
        "generate_tok_s": tokens / gen_s,
        "rollout_us_tok": 1e6 * collect_s / tokens,
        "update_us_tok": 1e6 * train_s / tokens,
        "generate_us_tok": 1e6 * gen_s / tokens,
        "supervised_us_tok": 1e6 * sup_s / tokens,
        "forward_share": parts["rollout_forward"] / collect_s,
        "env_share": (parts["env_step"] + parts["reward"]) / collect_s,
        "bookkeeping_share": parts["sb3_bookkeeping"] / collect_s,
    }


def _load() -> str:
    return "load average %.2f %.2f %.2f" % os.getloadavg()


def table_envs(tok: Any, s: Settings) -> list[dict]:
    print(f"\n## tokens/s vs n_envs ({s.arch} {s.size}, P={s.base_P}, T={s.base_T}; {_load()})")
    print("(shares: of the rollout's wall time: policy forward, env step with reward, SB3's own bookkeeping)")
    print(f"{'n_envs':>7}{'rollout tok/s':>15}{'generate tok/s':>16}{'rollout/generate':>18}"
          f"{'forward':>9}{'env':>6}{'sb3':>6}")
    out = []
    for n in s.n_envs_list:
        r = measure_point(tok, s, n, s.base_P, s.base_T)
        out.append(r)
        print(f"{n:>7}{r['rollout_tok_s']:>15,.0f}{r['generate_tok_s']:>16,.0f}"
              f"{r['rollout_tok_s'] / r['generate_tok_s']:>18.2f}{r['forward_share']:>9.0%}{r['env_share']:>6.0%}"
              f"{r['bookkeeping_share']:>6.0%}")
    return out


def _per_token_table(rows: list[dict], key: str) -> None:
    base = rows[0]
    print(f"{key:>6}{'rollout us/tok':>16}{'generate us/tok':>17}{'update us/tok':>15}{'superv. us/tok':>16}"
          f"{'rollout x':>11}{'generate x':>12}{'update x':>10}{'rollout/generate':>18}{'update/superv.':>16}")
    for r in rows:
        print(f"{r[key]:>6}{r['rollout_us_tok']:>16,.0f}{r['generate_us_tok']:>17,.0f}{r['update_us_tok']:>15,.0f}"
              f"{r['supervised_us_tok']:>16,.0f}{r['rollout_us_tok'] / base['rollout_us_tok']:>11.2f}"
              f"{r['generate_us_tok'] / base['generate_us_tok']:>12.2f}{r['update_us_tok'] / base['update_us_tok']:>10.2f}"
              f"{r['generate_us_tok'] / r['rollout_us_tok']:>18.2f}{r['update_us_tok'] / r['supervised_us_tok']:>16.2f}")


def table_length(tok: Any, s: Settings) -> list[dict]:
    print(f"\n## cost per generated token vs T ({s.arch} {s.size}, n_envs={s.base_envs}, P={s.base_P}; {_load()})")
    print("(x columns: divided by the first row; flat = cost per token does not grow with length. rollout/generate is a"
          " throughput ratio: 1 = as fast as generate; update/superv.: PPO epoch over supervised epoch, same tokens)")
    out = [measure_point(tok, s, s.base_envs, s.base_P, T) for T in s.lengths]
    _per_token_table(out, "T")
    return out


def table_prompt(tok: Any, s: Settings) -> list[dict]:
    print(f"\n## cost per generated token vs P ({s.arch} {s.size}, n_envs={s.base_envs}, T={s.base_T}; {_load()})")
    out = [measure_point(tok, s, s.base_envs, P, s.base_T) for P in s.prompts]
    _per_token_table(out, "P")
    return out


def table_floor(tok: Any, s: Settings) -> list[dict]:
    T = s.base_T
    print(f"\n## the floor: rollout vs HF generate, PPO epoch vs supervised epoch (n_envs={s.base_envs}, P={s.base_P}, "
          f"T={T}, 2 episodes per env; {_load()})")
    print("(rollout/generate: throughput ratio, 1 = as fast as generate; PPO/supervised: time ratio, 1 = same cost)")
    print(f"{'arch':>8}{'size':>6}{'params M':>10}{'rollout tok/s':>15}{'generate tok/s':>16}{'rollout/generate':>18}"
          f"{'PPO epoch s':>13}{'superv. s':>11}{'PPO/supervised':>16}")
    out = []
    for arch in s.floor_archs:
        for size in s.floor_sizes:
            r = floor_ratios(size, arch, tok, n_envs=s.base_envs, P=s.base_P, T=T, episodes_per_env=2,
                             repeats=s.repeats)
            r.update(arch=arch, size=size)
            out.append(r)
            print(f"{arch:>8}{size:>6}{r['params_m']:>10.1f}{r['rollout_tok_s']:>15,.0f}{r['generate_tok_s']:>16,.0f}"
                  f"{r['rollout_vs_generate']:>18.2f}{r['ppo_epoch_s']:>13.2f}{r['supervised_epoch_s']:>11.2f}"
                  f"{r['ppo_vs_supervised']:>16.2f}")
    return out


def table_memory(s: Settings) -> dict[str, Any]:
    print(f"\n## peak resident memory of a training run (2 rollouts of {s.mem_steps} steps + updates, T={s.mem_T}, "
          f"kl_coef=0.05; fresh process each; {_load()})")
    print(f"{'arch':>8}{'size':>6}{'params M':>10}{'n_envs':>8}{'P':>6}{'RSS before MiB':>16}{'peak MiB':>10}"
          f"{'growth MiB':>12}{'buffer MiB':>12}")
    out: dict[str, Any] = {"rows": []}
    points = [(size, s.base_envs, s.base_P) for size in s.mem_sizes]
    points += [(s.size, n, s.base_P) for n in s.mem_envs if n != s.base_envs]
    points += [(s.size, s.base_envs, P) for P in s.mem_prompts if P != s.base_P]
    for size, n, P in points:
        r = run_memory_child(size, s.arch, n, P, s.mem_T, s.mem_steps)
        r.update(size=size, n_envs=n, P=P)
        out["rows"].append(r)
        print(f"{s.arch:>8}{size:>6}{r['params_m']:>10.1f}{n:>8}{P:>6}{r['rss_before_learn_mb']:>16,.0f}"
              f"{r['peak_mb']:>10,.0f}{r['growth_mb']:>12,.0f}{r['buffer_mb']:>12.2f}")
    b = buffer_comparison(fill_steps=s.buffer_fill)
    out["buffer"] = b
    print("\n## rollout buffer bytes at P=1024, T=256, 32 envs, 2048 steps (one rollout)")
    print(f"{'SB3 DictRolloutBuffer MiB':>26}{'EpisodeRolloutBuffer MiB':>26}{'ratio':>9}")
    print(f"{b['stock_dict_mb']:>26,.0f}{b['episode_mb']:>26,.1f}{b['ratio']:>9.0f}")
    return out


TABLES = ("floor", "envs", "length", "prompt", "memory")
DEFAULT_TABLES = ("floor", "envs", "length", "prompt")


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the tables; returns their rows (used by the smoke tests)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny sizes: every table in under a minute")
    parser.add_argument("--arch", default="causal", choices=ARCHS)
    parser.add_argument("--size", default="tiny", choices=SIZES[:3], help="model of the n_envs/length/prompt tables")
    parser.add_argument("--tables", default=",".join(DEFAULT_TABLES),
                        help=f"comma-separated subset of {TABLES}, or 'all' (default: all but memory)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (1: on a shared 2-core machine 2 threads can run 30x slower)")
    parser.add_argument("--memory-child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    import torch as th

    th.set_num_threads(args.threads)
    if args.memory_child is not None:
        result = memory_child(**json.loads(args.memory_child))
        print(json.dumps(result))
        return result
    tables = list(TABLES) if args.tables == "all" else [t.strip() for t in args.tables.split(",") if t.strip()]
    bad = [t for t in tables if t not in TABLES]
    if bad:
        from text_envs.errors import unknown_name

        raise unknown_name("table", bad[0], TABLES)
    s = copy.deepcopy(QUICK if args.quick else Settings())
    s.arch, s.size = args.arch, args.size
    from text_envs.tokenization import load_tokenizer

    tok = load_tokenizer()
    print(f"# bench_scaling: {s.arch} {s.size}, torch threads {th.get_num_threads()}, {os.cpu_count()} CPUs, {_load()}")
    results: dict[str, Any] = {}
    start = time.perf_counter()
    if "floor" in tables:
        results["floor"] = table_floor(tok, s)
    if "envs" in tables:
        results["envs"] = table_envs(tok, s)
    if "length" in tables:
        results["length"] = table_length(tok, s)
    if "prompt" in tables:
        results["prompt"] = table_prompt(tok, s)
    if "memory" in tables:
        results["memory"] = table_memory(s)
    print(f"\n(total {time.perf_counter() - start:.0f} s; {_load()})")
    return results


if __name__ == "__main__":
    main()
