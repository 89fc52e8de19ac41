"""Our SB3 trainers (stock SB3 + LLMPolicy, sb3_ext.GRPO) against TRL's GRPO and RLOO, side by side in one run.

    pip install -e ".[bench]"                  # trl (the 1.16 API is what this script drives)
    python benchmarks/bench_trl.py             # issue 25's settings (below), 3 seeds, no KL: ~5 min of CPU time
    python benchmarks/bench_trl.py --quick     # one seed, T = 16, 2 updates: under a minute
    python benchmarks/bench_trl.py --lengths 32,128 --trainers ppo,grpo,rloo --kl 0.05   # the older T table
    python benchmarks/bench_trl.py --lengths 32 --warm-start 4000 --threads 2   # reward parity from a warm start

Trainers: ``plain`` is the design card's line ``PPO(LLMPolicy, env, n_steps=T, batch_size=n_envs * T, n_epochs=1)``
over SB3's ``DummyVecEnv`` of ``gym.make`` envs (SB3's defaults otherwise: its own buffer, which LLMPolicy groups
into episodes); ``sb3-grpo`` is ``sb3_ext.GRPO`` on ``make_text_vec_env(..., group_size=4)``; ``ppo`` is PPO with
``EpisodeRolloutBuffer`` (gamma 1, lambda 0.95: the older tables); ``grpo`` / ``rloo`` are TRL's trainers.

Settings (``--settings``, default ``16x32,64x64,t5:16x32``): ``NxT`` is N envs (TRL: N completions per update, in
groups of ``--generations``) of T generated tokens on the tiny causal model; ``t5:NxT`` runs our trainers on the
shipped 2.5M-parameter T5 (``LLMPolicy``'s default model) and TRL's, which have no seq2seq path, on a causal
model of the same width and total depth (a GPT-2 of 128 wide, 6 layers = the T5's 3 encoder + 3 decoder layers,
the shipped vocabulary: 2.0M parameters): the T5 row's ratio is "our T5 against TRL on the closest causal model".
``--lengths`` (with ``--completions``) gives the older causal settings ``completions x T`` instead.

What is matched between the three trainers (every row of a (T, seed) group starts from the same weights):

* the model: one tiny causal LM (GPT-2 shape, random weights from a config, no hub), float32 on CPU;
  TRL loads it from a temporary ``save_pretrained`` directory (its reference model is rebuilt from the path);
* the prompts and reward: the embedded ``TextSummarization-v0`` prompts, exactly as the env renders and
  tokenizes them (TRL gets a tokenizer copy that does not append EOS to a prompt), and
  ``text_envs.make_reward("rouge-l")`` on the decoded completion;
* with ``--warm-start N``: every trainer starts from the same model, first taught N train references (not
  among the RL prompts) by teacher forcing, so that "reward at equal tokens" compares learning, not noise;
* the completion length ``T`` (``max_new_tokens`` / ``max_completion_length``), temperature 1, no top-k/p;
* completions per update: ``--completions`` (PPO: that many envs with ``n_steps = T``; TRL: generation batch
  of that size, ``--generations`` completions per prompt, one optimizer step per generation batch);
* gradient passes over each generated token: one (PPO ``n_epochs=1`` and one minibatch per rollout; TRL
  ``num_iterations=1``, ``steps_per_generation=1``);
* KL coefficient (``--kl``, default 0.05 = RLOO's default; GRPO's default is 0), Adam (eps 1e-5), learning
  rate, constant schedule, gradient-norm clip 0.5;
* the token budget: ``--updates`` updates of ``completions * T`` generated tokens.

Reported per trainer: generated tokens per second of the whole training (wall time of ``learn`` /
``train``, generated tokens counted at the reward), the mean reward of the completions in the first and in
the last quarter of the budget, and where the time went (rollout, reward, reference/old log-probs, update,
SB3 bookkeeping). The ratio column is each trainer's tokens/s divided by TRL GRPO's in the same group.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import functools
import io
import os
import shutil
import sys
import tempfile
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_scaling as bs  # noqa: E402  (the shared helpers)

from text_envs.errors import TextEnvsError  # noqa: E402

TRAINERS = ("plain", "sb3-grpo", "ppo", "ppo+icdf", "grpo", "rloo")
DEFAULT_TRAINERS = ("plain", "sb3-grpo", "grpo")  # with --settings (the default)
LENGTHS_TRAINERS = ("ppo", "ppo+icdf", "grpo", "rloo")  # with --lengths / --quick: the older tables' rows
DEFAULT_SETTINGS = "16x32,64x64,t5:16x32"
#: the causal model TRL gets in a ``t5:`` setting: the shipped T5's width, heads and total depth (encoder + decoder)
T5_MATCHED_CAUSAL = {"n_embd": 128, "n_layer": 6, "n_head": 4}


@dataclass(frozen=True)
class Setting:
    """One group of side-by-side runs: ``n_envs`` texts per update (TRL: completions) of ``T`` tokens; ``arch``
    ``"causal"`` (every trainer on the tiny causal model) or ``"t5"`` (ours on the shipped T5, TRL's on
    :data:`T5_MATCHED_CAUSAL`)."""

    arch: str
    n_envs: int
    T: int

    @property
    def label(self) -> str:
        return f"{'t5:' if self.arch == 't5' else ''}{self.n_envs}x{self.T}"


def parse_settings(text: str) -> list[Setting]:
    """``"16x32,64x64,t5:16x32"`` -> settings; raises :class:`TextEnvsError` naming the bad item."""
    out = []
    for item in (x.strip() for x in text.split(",") if x.strip()):
        arch, _, size = item.rpartition(":")
        n, _, t = size.partition("x")
        if arch not in ("", "t5") or not (n.isdigit() and t.isdigit()) or int(n) < 1 or int(t) < 1:
            raise TextEnvsError(f"expected settings like '16x32' or 't5:16x32' (N envs x T tokens), got {item!r}")
        out.append(Setting("t5" if arch == "t5" else "causal", int(n), int(t)))
    if not out:
        raise TextEnvsError(f"expected at least one setting in --settings, got {text!r}")
    return out


class TRLUnavailableError(TextEnvsError):
    """TRL is missing or its API does not match what this benchmark drives."""


@dataclass
class RunResult:
    trainer: str
    T: int
    seed: int
    wall_s: float
    tokens: int
    rewards: list  # (cumulative generated tokens, reward) per completion
    parts: dict = field(default_factory=dict)  # seconds per part
    error: str | None = None
    setting: str = ""  # the Setting's label ("16x32", "t5:16x32")
    update_ends: list = field(default_factory=list)  # perf_counter() at the end of each optimizer update
    cpu_s: float = float("nan")  # CPU seconds of this process (all its threads) over the same span as wall_s

    @property
    def tok_s(self) -> float:
        return self.tokens / self.wall_s if self.wall_s > 0 else float("nan")

    @property
    def cpu_tok_s(self) -> float:
        """Tokens per CPU second: on a loaded machine the process waits for a core, which wall time counts and CPU
        time does not (one torch thread: close to the quiet machine's wall-time rate)."""
        return self.tokens / self.cpu_s if self.cpu_s > 0 else float("nan")

    @property
    def steady_tok_s(self) -> float:
        """Tokens/s after the first update: set-up, first calls and the first rollout left out (the rate a long run
        approaches). Every update generates the same tokens, so updates 2..n hold ``(n - 1) / n`` of them."""
        n = len(self.update_ends)
        if n < 2:
            return float("nan")
        return self.tokens * (n - 1) / n / (self.update_ends[-1] - self.update_ends[0])

    def reward_window(self, lo: float, hi: float) -> float:
        """Mean reward of the completions between fractions ``lo`` and ``hi`` of all completions, in the order
        they were generated (equal budgets and completion counts: the last quarter is "after the same tokens")."""
        if not self.rewards:
            return float("nan")
        r = np.array([x for _, x in sorted(self.rewards, key=lambda p: p[0])], dtype=float)
        a, b = int(round(lo * len(r))), max(int(round(hi * len(r))), int(round(lo * len(r))) + 1)
        return float(r[a:b].mean())


def task_data(tokenizer: Any, n: int, P: int, T: int) -> tuple[list[dict], list[str], list[str]]:
    """Rows for the env, and the env's own rendered prompts and references for TRL (the same texts)."""
    rows = bs.summary_rows(n)
    env = bs.make_env(rows, tokenizer, P, T).unwrapped
    prompts, refs = [], []
    for i in range(n):
        prompt, references = env.example_text(i)
        content = int(env.encode_prompt(prompt)[1].sum())
        if content >= P:
            raise TextEnvsError(f"expected prompts shorter than P={P} tokens (no truncation), got {content}: "
                                "raise --prompt-tokens")
        prompts.append(prompt)
        refs.append(references[0])
    return rows, prompts, refs


# --------------------------------------------------------------------------------------------------------
# our PPO
# --------------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def icdf_sampling() -> Any:
    """Experiment (a proposed ``sb3_ext`` change, see RESULTS.md): sample tokens by inverse CDF.

    SB3's ``CategoricalDistribution.sample`` calls ``torch.multinomial``, which on CPU draws a random number per
    vocabulary entry (2.1 ms for 16 x 4,000 logits here); one uniform per row and a ``searchsorted`` over the
    cumulative probabilities draw from the same distribution in 0.17 ms. Patched for the duration of the block.
    """
    import torch as th
    from stable_baselines3.common.distributions import CategoricalDistribution

    original = CategoricalDistribution.sample

    def sample(self: Any) -> th.Tensor:
        cdf = self.distribution.probs.cumsum(-1)  # (B, V)
        u = th.rand((*cdf.shape[:-1], 1), device=cdf.device, dtype=cdf.dtype) * cdf[..., -1:]  # (B, 1) in [0, total)
        # right=True: index j is drawn when cdf[j-1] <= u < cdf[j], so zero-probability tokens never are
        return th.searchsorted(cdf, u, right=True).squeeze(-1).clamp_(max=cdf.shape[-1] - 1)  # (B,)

    CategoricalDistribution.sample = sample
    try:
        yield
    finally:
        CategoricalDistribution.sample = original


def run_ppo(model: Any, tokenizer: Any, rows: list[dict], a: argparse.Namespace, T: int, seed: int,
            name: str = "ppo") -> RunResult:
    import torch as th

    from text_envs.wrappers import BaselinePool, SelfCriticalReward

    greedy = a.ppo_baseline == "greedy"
    # each env writes one text per update: one greedy batch serves every env for two updates
    wrapper = functools.partial(SelfCriticalReward, pool=BaselinePool(batch_size=2 * a.completions)) if greedy else None
    venv = bs.make_vec_env(rows, tokenizer, a.prompt_tokens, T, a.completions, seed, wrapper=wrapper)
    if name == "plain":  # the design card's line: SB3's defaults but for the rollout size, one minibatch, one epoch
        from stable_baselines3 import PPO

        from sb3_ext import LLMPolicy

        ppo = PPO(LLMPolicy, venv, n_steps=T, batch_size=a.completions * T, n_epochs=1, learning_rate=a.lr,
                  seed=seed, device=a.device, policy_kwargs=dict(model=model, tokenizer=tokenizer, kl_coef=a.kl))
    else:
        # with the per-prompt baseline, PPO as `text-envs train` runs it: lambda 1, value head off the trunk
        ppo = bs.make_ppo(venv, model, tokenizer, n_steps=T, batch_size=None, kl_coef=a.kl, learning_rate=a.lr,
                          seed=seed, max_grad_norm=0.5, device=a.device,
                          dtype=None if a.dtype == "float32" else a.dtype,
                          gae_lambda=1.0 if greedy else 0.95, value_mode="detached" if greedy else "shared")
    if greedy:  # the frozen starting model's greedy text; its decoding counts in PPO's time (env column)
        from sb3_ext import greedy_baseline

        start = ppo.policy.reference_model if ppo.policy.reference_model is not None else copy.deepcopy(ppo.policy.model)
        venv.set_attr("baseline_fn", greedy_baseline(start.eval(), tokenizer.eos_token_id, tokenizer.pad_token_id, T))
    timers = bs.instrument_ppo(ppo)
    ends = record_update_ends(ppo)
    budget = a.updates * a.completions * T
    th.manual_seed(seed)
    start, cpu = time.perf_counter(), time.process_time()
    with icdf_sampling() if name == "ppo+icdf" else contextlib.nullcontext():
        ppo.learn(budget, callback=bs.episode_logger(timers))
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    venv.close()
    rewards = [(t, r) for t, r, _ in timers.episodes]
    return RunResult(name, T, seed, wall, ppo.num_timesteps, rewards, timers.breakdown(), update_ends=ends,
                     cpu_s=cpu)


def record_update_ends(algo: Any) -> list[float]:
    """Wrap ``algo.train`` (an instance attribute, after any timer) to append ``perf_counter()`` at each update's
    end to the returned list."""
    ends: list[float] = []
    inner = algo.train

    def train(*args: Any, **kwargs: Any) -> Any:
        out = inner(*args, **kwargs)
        ends.append(time.perf_counter())
        return out

    algo.train = train
    return ends


def run_sb3_grpo(model: Any, tokenizer: Any, rows: list[dict], a: argparse.Namespace, T: int, seed: int) -> RunResult:
    """``sb3_ext.GRPO`` on the native vector env in groups of ``--generations`` (TRL's ``num_generations``), the same
    rows, reward, learning rate, clip norm and KL coefficient (in the loss, as TRL's ``beta``)."""
    import torch as th

    from sb3_ext import GRPO, LLMPolicy, make_text_vec_env

    venv = make_text_vec_env("TextSummarization-v0", a.completions, seed=seed, group_size=a.generations,
                             env_kwargs=dict(dataset=rows, tokenizer=tokenizer, max_prompt_tokens=a.prompt_tokens,
                                             max_new_tokens=T, reward="rouge-l"))
    kwargs: dict[str, Any] = dict(model=model, tokenizer=tokenizer)
    if a.dtype != "float32":
        kwargs["dtype"] = a.dtype
    algo = GRPO(LLMPolicy, venv, n_steps=T, learning_rate=a.lr, beta=a.kl, max_grad_norm=0.5, seed=seed,
                device=a.device, policy_kwargs=kwargs)
    sync = bs.cuda_sync(a.device)
    timers = {"collect": bs.CallTimer(algo.collect_rollouts, sync), "train": bs.CallTimer(algo.train, sync),
              "forward": bs.CallTimer(algo.policy.forward, sync), "env": bs.CallTimer(venv.step_wait)}
    algo.collect_rollouts, algo.train = timers["collect"], timers["train"]
    algo.policy.forward, venv.step_wait = timers["forward"], timers["env"]
    ends = record_update_ends(algo)
    episodes = bs.PPOTimers(*(bs.CallTimer(lambda: None) for _ in range(6)))  # only its episode log is used
    th.manual_seed(seed)
    start, cpu = time.perf_counter(), time.process_time()
    algo.learn(a.updates * a.completions * T, callback=bs.episode_logger(episodes))
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    venv.close()
    rest = timers["collect"].total - timers["forward"].total - timers["env"].total
    parts = {"rollout_forward": timers["forward"].total, "env_step": timers["env"].total,
             "update": timers["train"].total, "sb3_bookkeeping": max(rest, 0.0)}
    rewards = [(t, r) for t, r, _ in episodes.episodes]
    return RunResult("sb3-grpo", T, seed, wall, algo.num_timesteps, rewards, parts, update_ends=ends, cpu_s=cpu)


# --------------------------------------------------------------------------------------------------------
# TRL
# --------------------------------------------------------------------------------------------------------
def _trl() -> Any:
    try:
        import trl
    except ImportError as e:
        raise TRLUnavailableError(f"expected trl to be installed, got ImportError: {e}. "
                                  "Fix: pip install -e '.[bench]'") from e
    for name in ("GRPOTrainer", "GRPOConfig", "RLOOTrainer", "RLOOConfig"):
        if not hasattr(trl, name):
            raise TRLUnavailableError(f"expected trl.{name} (trl >= 0.20), got trl {trl.__version__} without it")
    return trl


class _RewardFn:
    """The reward (default ROUGE-L) of each completion against its reference; records (cumulative tokens, reward)
    and its time."""

    __name__ = "rouge_l"

    def __init__(self, spec: str = "rouge-l") -> None:
        from text_envs import make_reward

        self.reward = make_reward(spec)
        self.tokens = 0
        self.log: list[tuple[int, float]] = []
        self.seconds = 0.0

    def __call__(self, prompts: list, completions: list, completion_ids: list, summary: list, **kwargs: Any) -> list[float]:
        start = time.perf_counter()
        values = self.reward(list(completions), [[s] for s in summary], list(prompts))
        for ids, v in zip(completion_ids, values):
            self.tokens += len(ids)
            self.log.append((self.tokens, float(v)))
        self.seconds += time.perf_counter() - start
        return [float(v) for v in values]


def env_prompt_tokenizer(tokenizer: Any) -> Any:
    """A copy of ``tokenizer`` that tokenizes a prompt exactly as the env does. TRL calls ``tokenizer(text=prompts)``,
    which would append the tokenizer's EOS (the T5-style post-processor): a prompt one token longer than the env's,
    which a warm-started model has never seen."""
    from tokenizers import processors

    fast = copy.deepcopy(tokenizer)
    fast._tokenizer.post_processor = processors.TemplateProcessing(single="$A", pair="$A $B")
    return fast


def run_trl(kind: str, model_dir: str, tokenizer: Any, prompts: list[str], refs: list[str], a: argparse.Namespace,
            T: int, seed: int, out_dir: str) -> RunResult:
    trl = _trl()
    from datasets import Dataset

    Config, Trainer = (trl.GRPOConfig, trl.GRPOTrainer) if kind == "grpo" else (trl.RLOOConfig, trl.RLOOTrainer)
    common = dict(
        output_dir=os.path.join(out_dir, f"{kind}-{T}-{seed}"), use_cpu=a.device == "cpu", bf16=a.dtype == "bfloat16",
        fp16=False, report_to="none", model_init_kwargs={"dtype": a.dtype},
        save_strategy="no", logging_steps=10**6, disable_tqdm=True, seed=seed, data_seed=seed,
        learning_rate=a.lr, lr_scheduler_type="constant", warmup_steps=0, adam_epsilon=1e-5, weight_decay=0.0,
        max_grad_norm=0.5, max_steps=a.updates, per_device_train_batch_size=a.completions,
        gradient_accumulation_steps=1, steps_per_generation=1, num_iterations=1, num_generations=a.generations,
        max_completion_length=T, temperature=1.0, top_k=0, top_p=1.0, beta=a.kl, dataloader_num_workers=0,
    )
    args = Config(**common)
    dataset = Dataset.from_dict({"prompt": prompts, "summary": refs})
    reward = _RewardFn(getattr(a, "reward", "rouge-l"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer = Trainer(model=model_dir, reward_funcs=[reward], args=args, train_dataset=dataset,
                          processing_class=env_prompt_tokenizer(tokenizer))
    timers = {}
    for name in ("_generate", "_calculate_rewards", "_generate_and_score_completions"):
        if not hasattr(trainer, name):
            raise TRLUnavailableError(f"expected {Trainer.__name__}.{name} (trl 1.16 API), got trl {trl.__version__}")
        timers[name] = bs.CallTimer(getattr(trainer, name), bs.cuda_sync(a.device))
        setattr(trainer, name, timers[name])
    sync = bs.cuda_sync(a.device)
    ends: list[float] = []
    trainer.add_callback(_UpdateEnds(ends, sync))
    start, cpu = time.perf_counter(), time.process_time()
    with contextlib.redirect_stdout(io.StringIO()):
        trainer.train()
    if sync is not None:
        sync()
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    del trainer
    gen, rew, score = (timers[n].total for n in ("_generate", "_calculate_rewards", "_generate_and_score_completions"))
    parts = {
        "rollout_forward": gen,
        "reward": rew,
        "kl_ref_gae": max(score - gen - rew, 0.0),  # old/reference log-probs and advantages
        "update": max(wall - score, 0.0),  # loss forward/backward, optimizer, Trainer bookkeeping
    }
    return RunResult(kind, T, seed, wall, reward.tokens, reward.log, parts, update_ends=ends, cpu_s=cpu)


def _UpdateEnds(ends: list[float], sync: Any) -> Any:  # noqa: N802  (a class built on first use: TRL is optional)
    """A ``transformers.TrainerCallback`` appending ``perf_counter()`` to ``ends`` after each optimizer step."""
    from transformers import TrainerCallback

    class UpdateEnds(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if sync is not None:
                sync()
            ends.append(time.perf_counter())

    return UpdateEnds()


# --------------------------------------------------------------------------------------------------------
# the run
# --------------------------------------------------------------------------------------------------------
def warm_start_model(model: Any, tokenizer: Any, a: argparse.Namespace, T: int, seed: int, skip: int) -> float:
    """Supervised teacher forcing of ``model`` (in place) on ``a.warm_start`` train references that are not
    among the RL prompts (rows from index ``skip`` on), so that every trainer starts from a model that already
    writes summary-like text and the reward at equal tokens measures learning, not noise. Returns the loss."""
    from sb3_ext import warm_start

    rows = bs.summary_rows(a.warm_start, start=skip)
    venv = bs.make_vec_env(rows, tokenizer, a.prompt_tokens, T, 1, seed)
    ppo = bs.make_ppo(venv, model, tokenizer, n_steps=T, seed=seed, device=a.device,
                      dtype=None if a.dtype == "float32" else a.dtype)
    losses = warm_start(ppo.policy, venv, epochs=a.warm_start_epochs, batch_size=16, learning_rate=1e-3, seed=seed)
    venv.close()
    model.eval()
    return losses[-1]


def t5_matched_causal(tokenizer: Any, max_positions: int, seed: int) -> Any:
    """TRL's model in a ``t5:`` setting: a random GPT-2 of the shipped T5's width, heads and total depth
    (:data:`T5_MATCHED_CAUSAL`) over the same vocabulary, seeded."""
    import torch as th
    from transformers import AutoModelForCausalLM, GPT2Config

    cfg = GPT2Config(vocab_size=len(tokenizer), n_positions=max_positions, resid_pdrop=0.0, embd_pdrop=0.0,
                     attn_pdrop=0.0, pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                     bos_token_id=tokenizer.eos_token_id, **T5_MATCHED_CAUSAL)
    th.manual_seed(seed)
    return AutoModelForCausalLM.from_config(cfg).eval()


def run_group(tokenizer: Any, a: argparse.Namespace, T: int, seed: int, trainers: Sequence[str],
              arch: str = "causal") -> list[RunResult]:
    """One (setting, seed) group: every trainer from the same initial weights, prompts and reward (``arch="t5"``:
    ours from the shipped T5, TRL's from :func:`t5_matched_causal`)."""
    n_prompts = max(64, a.updates * a.completions)
    rows, prompts, refs = task_data(tokenizer, n_prompts, a.prompt_tokens, T)
    import torch as th

    dtype = None if a.dtype == "float32" else getattr(th, a.dtype)
    if arch == "t5":
        model = t5_matched_causal(tokenizer, a.prompt_tokens + T + 8, seed)
        if dtype is not None:
            model = model.to(dtype)
    else:
        model = bs.build_model(a.size, "causal", tokenizer, max_positions=a.prompt_tokens + T + 8, seed=seed,
                               dtype=dtype)
    if a.warm_start:
        if arch == "t5":
            raise TextEnvsError("expected --warm-start 0 with a t5: setting (the shipped T5 is already trained)")
        t0 = time.perf_counter()
        loss = warm_start_model(model, tokenizer, a, T, seed, skip=n_prompts)
        print(f"  warm start (T={T}, seed {seed}): {a.warm_start} references x {a.warm_start_epochs} epochs, "
              f"final loss {loss:.3f} nats/token, {time.perf_counter() - t0:.0f} s (not counted in tok/s)", flush=True)
    ours = (lambda: None) if arch == "t5" else (lambda: copy.deepcopy(model))  # None: LLMPolicy's shipped T5
    out: list[RunResult] = []
    tmp = tempfile.mkdtemp(prefix="bench_trl_")
    try:
        model_dir = os.path.join(tmp, "model")
        model.save_pretrained(model_dir)
        tokenizer.save_pretrained(model_dir)
        for kind in trainers:
            try:
                if kind == "sb3-grpo":
                    out.append(run_sb3_grpo(ours(), tokenizer, rows, a, T, seed))
                elif kind in ("plain", "ppo", "ppo+icdf"):
                    out.append(run_ppo(ours(), tokenizer, rows, a, T, seed, kind))
                else:
                    out.append(run_trl(kind, model_dir, tokenizer, prompts, refs, a, T, seed, tmp))
            except TRLUnavailableError as e:
                out.append(RunResult(kind, T, seed, float("nan"), 0, [], error=str(e)))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


PART_NAMES = ("rollout_forward", "env_step", "reward", "kl_ref_gae", "update", "sb3_bookkeeping")


def print_tables(results: list[RunResult], a: argparse.Namespace, title: str | None = None) -> list[dict]:
    """Per (setting, trainer): mean over seeds; ratios against GRPO of the same seed first, then averaged."""
    rows = []
    for T in sorted({r.T for r in results}):
        head = title or f"T={T}: {a.completions} completions/update"
        print(f"\n## {head}, {a.updates} updates "
              f"({a.updates * a.completions * T} generated tokens), kl={a.kl}, lr={a.lr}; {bs._load()}")
        print(f"{'trainer':<9}{'tok/s':>9}{'x GRPO':>8}{'steady':>8}{'x GRPO':>8}{'tok/cpu-s':>10}{'x GRPO':>8}"
              f"{'reward first 1/4':>18}"
              f"{'reward last 1/4':>17}"
              f"{'rollout':>9}{'env':>6}{'reward':>8}{'ref/old':>9}{'update':>8}{'sb3':>6}{'seeds':>7}")
        group = [r for r in results if r.T == T]
        grpo = {r.seed: r for r in group if r.trainer == "grpo" and r.error is None}
        for kind in dict.fromkeys(r.trainer for r in group):
            runs = [r for r in group if r.trainer == kind]
            errs = [r.error for r in runs if r.error]
            if errs:
                print(f"{kind:<9}  not run: {errs[0]}")
                rows.append({"T": T, "trainer": kind, "error": errs[0]})
                continue
            tok_s = float(np.mean([r.tok_s for r in runs]))
            ratio = [r.tok_s / grpo[r.seed].tok_s for r in runs if r.seed in grpo]
            x = float(np.mean(ratio)) if ratio else float("nan")
            steady = float(np.mean([r.steady_tok_s for r in runs]))
            steady_ratio = [r.steady_tok_s / grpo[r.seed].steady_tok_s for r in runs if r.seed in grpo]
            xs = float(np.mean(steady_ratio)) if steady_ratio else float("nan")
            cpu = float(np.mean([r.cpu_tok_s for r in runs]))
            cpu_ratio = [r.cpu_tok_s / grpo[r.seed].cpu_tok_s for r in runs if r.seed in grpo]
            xc = float(np.mean(cpu_ratio)) if cpu_ratio else float("nan")
            first = [r.reward_window(0.0, 0.25) for r in runs]
            last = [r.reward_window(0.75, 1.0) for r in runs]
            wall = sum(r.wall_s for r in runs)
            shares = {p: sum(r.parts.get(p, 0.0) for r in runs) / wall for p in PART_NAMES}
            row = {"T": T, "trainer": kind, "tok_s": tok_s, "x_grpo": x, "steady_tok_s": steady,
                   "x_grpo_steady": xs, "cpu_tok_s": cpu, "x_grpo_cpu": xc, "reward_first": float(np.mean(first)),
                   "reward_last": float(np.mean(last)), "reward_last_std": float(np.std(last)), "shares": shares,
                   "seeds": len(runs)}
            rows.append(row)
            sh = [f"{shares[p]:.0%}" if p in runs[0].parts else "-" for p in PART_NAMES]
            print(f"{kind:<9}{tok_s:>9,.0f}{x:>8.2f}{steady:>8,.0f}{xs:>8.2f}{cpu:>10,.0f}{xc:>8.2f}"
                  f"{np.mean(first):>18.4f}"
                  f"{np.mean(last):>11.4f}±{np.std(last):<5.3f}"
                  f"{sh[0]:>9}{sh[1]:>6}{sh[2]:>8}{sh[3]:>9}{sh[4]:>8}{sh[5]:>6}{len(runs):>7}")
    return rows


_DEFAULTS = {"seeds": "0,1,2", "completions": 16}
_QUICK = {"lengths": "16", "seeds": "0", "completions": 8, "updates": 2}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line (``--quick`` applied); raises :class:`TextEnvsError` on inconsistent settings."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="one seed, T=16, 2 updates of 8 completions")
    parser.add_argument("--settings", default=None,
                        help=f"NxT groups, comma-separated; t5:NxT for the shipped T5 (default {DEFAULT_SETTINGS})")
    parser.add_argument("--lengths", default=None,
                        help="instead of --settings: completion lengths T, comma-separated, each at --completions")
    parser.add_argument("--seeds", default=None, help="comma-separated (default 0,1,2)")
    parser.add_argument("--trainers", default=None,
                        help=f"subset of {TRAINERS} (ppo+icdf: PPO with the inverse-CDF sampling experiment); default "
                             f"{','.join(DEFAULT_TRAINERS)}, with --lengths {','.join(LENGTHS_TRAINERS)}")
    parser.add_argument("--completions", type=int, default=None,
                        help="completions per update with --lengths (default 16)")
    parser.add_argument("--generations", type=int, default=4, help="TRL completions per prompt (group size)")
    parser.add_argument("--updates", type=int, default=None,
                        help="updates per run (default: 12 up to 512 tokens per update, else 16,384 tokens / "
                             "(N x T), at least 3; with --lengths: 12 at T<=32, 6 above)")
    parser.add_argument("--kl", type=float, default=None,
                        help="KL coefficient of every trainer (default: 0 with --settings, as issue 25 measured; "
                             "0.05 with --lengths, RLOO's default, as the older tables)")
    parser.add_argument("--ppo-baseline", default="none", choices=("none", "greedy"),
                        help="greedy: PPO's reward minus the starting model's greedy reward on the same prompt "
                             "(text_envs.wrappers.SelfCriticalReward), with lambda 1 and a detached value head")
    parser.add_argument("--reward", default="rouge-l", help="the reward of TRL's trainers (a text_envs reward name)")
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--warm-start", type=int, default=0, metavar="N",
                        help="first teach the model N train references (teacher forcing; 0: start from random weights)")
    parser.add_argument("--warm-start-epochs", type=int, default=3, help="passes over the warm-start references")
    parser.add_argument("--prompt-tokens", type=int, default=128, help="P: every embedded prompt fits in 128")
    parser.add_argument("--size", default="tiny", choices=bs.SIZES, help="causal model size (GPT-2 shape; 0.5b: Qwen2)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (TRL: use_cpu=True on cpu)")
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"), help="parameter dtype of all three")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: the machine is shared)")
    parser.add_argument("--warmup", action=argparse.BooleanOptionalAction, default=None,
                        help="first run every trainer for one update, untimed (default: on CUDA only), so that the "
                             "first timed trainer does not pay for CUDA's start-up and kernel selection")
    a = parser.parse_args(argv)
    if a.warmup is None:
        a.warmup = a.device.startswith("cuda")
    for key, value in (_QUICK if a.quick else _DEFAULTS).items():  # what the command line leaves unset
        if getattr(a, key) is None:
            setattr(a, key, value)
    if a.settings is not None and a.lengths is not None:
        raise TextEnvsError("expected --settings or --lengths, got both: --settings 16x32 is --lengths 32 "
                            "--completions 16")
    if a.lengths is not None:
        a.setting_list = [Setting("causal", a.completions, int(x)) for x in a.lengths.split(",") if x.strip()]
    else:
        a.setting_list = parse_settings(a.settings or DEFAULT_SETTINGS)
    if a.kl is None:
        a.kl = 0.05 if a.lengths is not None else 0.0
    if a.trainers is None:
        a.trainers = ",".join(LENGTHS_TRAINERS if a.lengths is not None else DEFAULT_TRAINERS)
    trainers = [t.strip() for t in a.trainers.split(",") if t.strip()]
    for t in trainers:
        if t not in TRAINERS:
            from text_envs.errors import unknown_name

            raise unknown_name("trainer", t, TRAINERS)
    a.trainer_list = trainers
    if a.device == "cpu" and a.dtype != "float32":
        raise TextEnvsError(f"expected --dtype float32 on CPU (TRL on CPU needs bf16=False), got {a.dtype}")
    for st in a.setting_list:
        if st.n_envs % a.generations:
            raise TextEnvsError(f"expected --completions to be a multiple of --generations (TRL groups), got "
                                f"{st.n_envs} and {a.generations} (setting {st.label})")
    return a


def main(argv: Sequence[str] | None = None) -> list[dict]:
    """Run the comparison; returns one summary row per (T, trainer) (used by the smoke tests)."""
    a = parse_args(argv)
    import torch as th

    th.set_num_threads(a.threads)
    _quiet()
    from text_envs.tokenization import load_tokenizer

    tok = load_tokenizer()
    try:
        import trl

        trl_version = trl.__version__
    except ImportError:
        trl_version = "not installed"
    import stable_baselines3
    import transformers

    print(f"# bench_trl: torch {th.__version__} ({th.get_num_threads()} threads), transformers {transformers.__version__}, "
          f"trl {trl_version}, SB3 {stable_baselines3.__version__}; {os.cpu_count()} CPUs; {bs._load()}")
    results: list[RunResult] = []
    if a.warmup:
        t0 = time.perf_counter()
        first = a.setting_list[0]
        run_group(tok, argparse.Namespace(**{**vars(a), "updates": 1, "warm_start": 0, "completions": first.n_envs}),
                  first.T, 0, a.trainer_list, first.arch)
        print(f"(warm-up: every trainer for one update at {first.label}, untimed: {time.perf_counter() - t0:.0f} s)",
              flush=True)
    start = time.perf_counter()
    for st in a.setting_list:
        T, per_update = st.T, st.n_envs * st.T
        if a.lengths is not None:
            updates = a.updates or (12 if T <= 32 else 6)
        else:
            updates = a.updates or (12 if per_update <= 512 else max(3, 16384 // per_update))
        a_t = argparse.Namespace(**{**vars(a), "updates": updates, "completions": st.n_envs})
        for seed in (int(x) for x in a.seeds.split(",")):
            group = run_group(tok, a_t, T, seed, a.trainer_list, st.arch)
            for r in group:
                r.setting = st.label
            results += group
        model = ("ours: the shipped T5; TRL: GPT-2 " + "/".join(f"{k} {v}" for k, v in T5_MATCHED_CAUSAL.items())
                 if st.arch == "t5" else f"{a.size} causal")
        print_tables([r for r in results if r.setting == st.label], a_t,
                     title=f"{st.label} ({model}): {st.n_envs} envs / completions per update of T={T}")
    print(f"\n(columns: tok/s = generated tokens / training wall time; x GRPO = tok/s over TRL GRPO's, per seed; "
          f"steady = tokens/s from the end of the first update to the end (set-up and first calls left out); "
          f"tok/cpu-s = tokens per CPU second of the process (what a loaded machine's waits for a core leave out); "
          f"reward = mean ROUGE-L of the completions in that quarter of the token budget, ± std over seeds; "
          f"time shares of the wall time. Total {time.perf_counter() - start:.0f} s; {bs._load()})")
    return [row for row in _summaries(results, a)]


def _quiet() -> None:
    """Silence the libraries' progress bars and deprecation chatter: the tables are the output."""
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning)


def _summaries(results: list[RunResult], a: argparse.Namespace) -> list[dict]:
    out = []
    for setting in dict.fromkeys(r.setting for r in results):
        group = [r for r in results if r.setting == setting]
        grpo = {r.seed: r for r in group if r.trainer == "grpo" and r.error is None}
        for kind in dict.fromkeys(r.trainer for r in group):
            runs = [r for r in group if r.trainer == kind]
            ratios = [r.tok_s / grpo[r.seed].tok_s for r in runs if r.seed in grpo and r.error is None]
            steady = [r.steady_tok_s / grpo[r.seed].steady_tok_s for r in runs if r.seed in grpo and r.error is None]
            cpu = [r.cpu_tok_s / grpo[r.seed].cpu_tok_s for r in runs if r.seed in grpo and r.error is None]
            out.append({"setting": setting, "T": runs[0].T, "trainer": kind,
                        "x_grpo": float(np.mean(ratios)) if ratios else float("nan"),
                        "x_grpo_steady": float(np.mean(steady)) if steady else float("nan"),
                        "x_grpo_cpu": float(np.mean(cpu)) if cpu else float("nan"),
                        "error": next((r.error for r in runs if r.error), None),
                        "tok_s": float(np.mean([r.tok_s for r in runs])),
                        "tokens": [r.tokens for r in runs],
                        "reward_last": float(np.mean([r.reward_window(0.75, 1.0) for r in runs])),
                        "parts": [r.parts for r in runs]})
    return out


if __name__ == "__main__":
    main()
