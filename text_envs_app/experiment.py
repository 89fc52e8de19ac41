"""The main job: train a language model with an SB3 algorithm on a text env, evaluate it, save it.

``text-envs train`` / ``eval`` / ``bench`` are thin wrappers over :func:`train`, :func:`evaluate_saved` and
:func:`run_benchmark`. Every option is a field of :class:`TrainConfig` (the CLI flags are generated from it,
and a JSON config file may hold them too).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from text_envs.errors import TextEnvsError, unknown_name

ALGORITHMS = ("ppo", "a2c", "trpo", "nlpo")
BASELINES = ("auto", "greedy", "none")
TABLE_METRICS = ("rouge-1", "rouge-2", "rouge-l", "bleu", "meteor")


@dataclass
class TrainConfig:
    """Settings of one training run. The PPO settings are pinned for text: SB3's defaults (2048 steps x
    10 epochs x batch 64) are tuned for control tasks, not for a language model whose episodes are texts."""

    env: str = "TextSummarization-v0"
    """the registered env id"""
    algo: str = "ppo"
    """ppo, a2c, trpo or nlpo (PPO with a top-p action mask from a periodically synced copy of the policy)"""
    model: str | None = None
    """a model folder or hub name; default: the package's shipped warm-started tiny T5"""
    dataset: str | None = None
    """the env's data: a hub name or a local file; default: the embedded data"""
    difficulty: int = 3
    """difficulty of the embedded data (1-3). The shipped model was warm-started to its plateau on difficulty 1
    (test ROUGE-L 0.999 there); difficulty 3's longer, shuffled documents (0.895) leave room for RL"""
    reward: str | None = None
    """the reward name (see text_envs.list_rewards()); default: the env's (ROUGE-L for summarization)"""
    steps: int = 32_768
    """generated tokens (env steps, all envs together) of RL training"""
    seed: int = 0
    """seeds the envs, torch and the evaluation"""
    n_envs: int = 32
    """envs stepped side by side (one batch of the policy per token)"""
    device: str = "cpu"
    """torch device: cpu, cuda, or auto"""
    n_steps: int = 64
    """tokens per env per rollout (a rollout is n_envs * n_steps tokens, about 120 texts by default)"""
    batch_size: int | None = None
    """tokens per minibatch (whole episodes are kept together); None: the whole rollout, one gradient step per
    rollout of ~120 texts (several small minibatches and epochs spend most of the time re-encoding the same
    prompts, for little gain in a short run)"""
    n_epochs: int = 1
    """passes over each rollout (PPO, NLPO)"""
    learning_rate: float = 2e-4
    """Adam learning rate"""
    gamma: float = 1.0
    """discount: 1 for a terminal text reward"""
    gae_lambda: float = 1.0
    """GAE lambda; 1: every token of a text is credited with the text's return minus the value (the value head
    starts untrained, and lambda < 1 would then credit late tokens more than early ones whatever the text)"""
    clip_range: float = 0.2
    """PPO ratio clip"""
    ent_coef: float = 0.0
    """entropy bonus"""
    vf_coef: float = 0.5
    """value-loss weight"""
    value_mode: str = "detached"
    """value head on the LM's last hidden state: "detached" (the value loss does not train the LM), "shared"
    (it does) or "separate" (a second copy of the LM)"""
    value_lr_scale: float = 1.0
    """multiplies the value head's effective learning rate (its output scale; SB3 gives all parameters one rate)"""
    baseline: str = "auto"
    """"greedy": pay each text its reward minus the reward of the starting model's greedy text for the same
    prompt (self-critical training, Rennie et al. 2017): a per-prompt baseline, which removes the reward's
    variance between easy and hard prompts that a value head cannot learn in a short run; "none": the reward
    itself; "auto": greedy for envs that score finished texts (all but TextCopy-v0, paid per token)"""
    max_grad_norm: float = 0.5
    """gradient clipping"""
    kl_coef: float = 0.02
    """KL penalty to the starting model, per token (0 disables it)"""
    kl_target: float | None = None
    """target KL per text for the adaptive coefficient (Ziegler et al. 2019); None: fixed coefficient"""
    top_p: float = 0.9
    """NLPO's nucleus mask"""
    temperature: float = 1.0
    """sampling temperature, part of the trained distribution (rollout and update alike)"""
    top_k: int | None = None
    """keep only the k most likely tokens of the frozen starting model when sampling (None: no mask)"""
    target_kl: float | None = None
    """PPO: stop an update's epochs early once the approximate KL to the rollout policy exceeds 1.5x this"""
    max_new_tokens: int | None = None
    """token budget of a generated text; default: the env's"""
    compare_supervised: bool = False
    """after RL, train the starting model by supervised teacher forcing on the train split's references for the
    same wall time, evaluate it the same way and add its column to the table (the honest alternative)"""
    supervised_lr: float = 1e-4
    """Adam learning rate of that supervised comparison (batches of 16 references)"""
    eval_examples: int = 200
    """test examples evaluated before and after training"""
    eval_split: str = "test"
    """the held-out split to evaluate on"""
    out: str = "runs/train"
    """output folder (refused if it exists, unless --resume or --overwrite)"""
    resume: bool = False
    """continue an interrupted run from its checkpoint in --out"""
    overwrite: bool = False
    """replace an existing output folder"""

    def validate(self) -> None:
        import text_envs

        if self.algo not in ALGORITHMS:
            raise unknown_name("algorithm", self.algo, ALGORITHMS)
        if self.env not in text_envs.ENV_IDS:
            raise unknown_name("env", self.env, text_envs.ENV_IDS)
        if self.reward is not None:
            names = text_envs.list_rewards()
            for part in self.reward.replace("+", " ").split():
                name = part.split("*")[-1]
                if name not in names:
                    raise unknown_name("reward", name, names)
        from sb3_ext.policy import VALUE_MODES
        from text_envs.data.generators import DIFFICULTIES

        if self.value_mode not in VALUE_MODES:
            raise unknown_name("value mode", self.value_mode, VALUE_MODES)
        if self.baseline not in BASELINES:
            raise unknown_name("baseline", self.baseline, BASELINES)
        if self.difficulty not in DIFFICULTIES:
            raise TextEnvsError(f"--difficulty must be one of {DIFFICULTIES}, got {self.difficulty}.")
        for name in ("steps", "n_envs", "n_steps", "batch_size", "n_epochs", "eval_examples"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise TextEnvsError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}.")

    def rollout_batch_size(self) -> int:
        """The minibatch in tokens: ``batch_size``, or the whole rollout (``n_envs * n_steps``) when None."""
        return self.batch_size if self.batch_size is not None else self.n_envs * self.n_steps

    def env_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {}
        if self.dataset is not None:
            kwargs["dataset"] = self.dataset
        elif self.env != "TextCopy-v0":
            kwargs["difficulty"] = self.difficulty
        if self.reward is not None:
            kwargs["reward"] = self.reward
        if self.max_new_tokens is not None:
            kwargs["max_new_tokens"] = self.max_new_tokens
        if self.model is not None and self.env != "TextCopy-v0":
            kwargs["tokenizer"] = self.model  # a model folder or hub name carries its tokenizer
        return kwargs


def field_docs() -> dict[str, str]:
    """The docstring under each TrainConfig field (the CLI's help text)."""
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(TrainConfig))
    body = tree.body[0].body
    docs = {}
    for node, nxt in zip(body, body[1:]):
        if isinstance(node, ast.AnnAssign) and isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant):
            docs[node.target.id] = str(nxt.value.value)
    return docs


def load_config_file(path: str | os.PathLike) -> dict[str, Any]:
    """Read a JSON (or TOML) config file into TrainConfig field values, rejecting unknown keys."""
    path = Path(path)
    if not path.is_file():
        raise TextEnvsError(f"Config file {str(path)!r} does not exist.")
    if path.suffix == ".toml":
        import tomllib

        values = tomllib.loads(path.read_text())
    else:
        values = json.loads(path.read_text())
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    for key in values:
        if key.replace("-", "_") not in known:
            raise unknown_name("config key", key, known)
    return {k.replace("-", "_"): v for k, v in values.items()}


# ---------------------------------------------------------------------------------------------- building
def make_train_env(cfg: TrainConfig):
    """The training VecEnv. Unless ``baseline="none"``, each env that scores finished texts is wrapped in
    ``SelfCriticalReward`` outside its ``Monitor`` (so logs keep the task reward), all sharing one
    ``BaselinePool`` (one batched decoding serves every env); :func:`attach_baseline` then gives it the starting
    model's greedy decoding."""
    from stable_baselines3.common.env_util import make_vec_env

    from text_envs.wrappers import BaselinePool

    return make_vec_env(
        f"text_envs:{cfg.env}",
        n_envs=cfg.n_envs,
        seed=cfg.seed,
        env_kwargs=cfg.env_kwargs(),
        monitor_kwargs={"info_keywords": ("generated_length",)},
        wrapper_class=_baseline_wrapper,
        wrapper_kwargs={"baseline": cfg.baseline, "pool": BaselinePool()},
    )


def _baseline_wrapper(env: Any, baseline: str, pool: Any) -> Any:
    from text_envs.wrappers import SelfCriticalReward

    if baseline == "none" or (baseline == "auto" and getattr(env.unwrapped, "reward", None) is None):
        return env  # "auto" on a per-token task (TextCopy-v0) has no text score to compare
    return SelfCriticalReward(env, pool=pool)


def attach_baseline(venv: Any, start_lm: Any) -> None:
    """Give the envs' ``SelfCriticalReward`` the frozen starting model's greedy decoding (no-op without one)."""
    from sb3_ext.backends import greedy_baseline
    from text_envs.wrappers import SelfCriticalReward

    if not any(venv.env_is_wrapped(SelfCriticalReward)):
        return

    base = venv.get_attr("unwrapped", [0])[0]
    venv.set_attr("baseline_fn", greedy_baseline(start_lm, base.eos_token_id, base.pad_token_id,
                                                 base.max_new_tokens))


def algorithm_class(algo: str):
    if algo in ("ppo", "nlpo"):
        from stable_baselines3 import PPO

        return PPO
    if algo == "a2c":
        from stable_baselines3 import A2C

        return A2C
    from sb3_ext.trpo import TRPO  # sb3-contrib's, with its actor gradients in one backward pass

    return TRPO


def build_model(cfg: TrainConfig, venv: Any, tensorboard_log: str | None):
    from sb3_ext import EpisodeRolloutBuffer, LLMPolicy

    tokenizer = venv.get_attr("tokenizer", [0])[0]
    policy_kwargs: dict[str, Any] = dict(model=cfg.model, tokenizer=tokenizer, kl_coef=cfg.kl_coef,
                                         kl_target=cfg.kl_target, temperature=cfg.temperature, top_k=cfg.top_k,
                                         value_mode=cfg.value_mode, value_lr_scale=cfg.value_lr_scale)
    if cfg.algo == "nlpo":
        policy_kwargs.update(top_p=cfg.top_p, mask_source="policy_copy")
    common: dict[str, Any] = dict(
        policy=LLMPolicy, env=venv, learning_rate=cfg.learning_rate, n_steps=cfg.n_steps, gamma=cfg.gamma,
        gae_lambda=cfg.gae_lambda, vf_coef=cfg.vf_coef, max_grad_norm=cfg.max_grad_norm,
        rollout_buffer_class=EpisodeRolloutBuffer, policy_kwargs=policy_kwargs, seed=cfg.seed,
        device=cfg.device, tensorboard_log=tensorboard_log, verbose=0,
    )
    if cfg.algo in ("ppo", "nlpo"):
        common.update(batch_size=cfg.rollout_batch_size(), n_epochs=cfg.n_epochs, clip_range=cfg.clip_range,
                      ent_coef=cfg.ent_coef, target_kl=cfg.target_kl)
    elif cfg.algo == "a2c":
        # Adam, as for every other algorithm here: SB3's A2C default, RMSprop, starts with steps about 10x the
        # learning rate (its squared-gradient average starts at 0) and knocked the shipped model 5 nats away
        common.update(ent_coef=cfg.ent_coef, use_rms_prop=False)
    else:  # TRPO: no clip, entropy or grad-norm settings; its own line search
        for key in ("vf_coef", "max_grad_norm"):
            common.pop(key)
        common.update(batch_size=cfg.rollout_batch_size(), target_kl=0.01)
    return algorithm_class(cfg.algo)(**common)


# ---------------------------------------------------------------------------------------------- evaluation
def evaluate_policy_on_split(policy: Any, cfg: TrainConfig, reference: Any = None) -> tuple[dict[str, float], list]:
    """Greedy generations for the first ``eval_examples`` of the held-out split, the metric table and the
    mean KL (nats per text) of the policy to ``reference`` (the starting model) on those generations."""
    from text_envs.evaluation import evaluate

    result = evaluate(cfg.env, policy, split=cfg.eval_split, n_examples=cfg.eval_examples, deterministic=True,
                      metrics=TABLE_METRICS, batch_size=min(32, cfg.eval_examples), seed=cfg.seed,
                      env_kwargs=cfg.env_kwargs())
    table = dict(result.table)
    if reference is not None:
        table["kl"] = sequence_kl(policy, reference, cfg, result.generations)
    return table, result.generations


def sequence_kl(policy: Any, reference_lm: Any, cfg: TrainConfig, generations: list[dict[str, Any]]) -> float:
    """Mean over texts of sum_t KL(pi(.|s_t) || pi_ref(.|s_t)), exact over the vocabulary, along each text."""
    import gymnasium as gym
    import torch as th

    from sb3_ext.backends import make_backend

    env = gym.make(cfg.env, split=cfg.eval_split, **cfg.env_kwargs()).unwrapped
    ref_backend = make_backend(reference_lm, policy.V)
    tok = env.tokenizer
    total = 0.0
    with th.no_grad():
        for gen in generations:
            ids, mask = env.encode_prompt(gen["prompt"])
            tokens = tok(gen["prediction"], add_special_tokens=False)["input_ids"][: env.max_new_tokens - 1]
            tokens = list(tokens) + [env.eos_token_id]
            p_ids = th.as_tensor(ids[None], device=policy.device)
            p_mask = th.as_tensor(mask[None], device=policy.device)
            t_ids = th.as_tensor([tokens], device=policy.device)
            logp = th.log_softmax(policy.distribution_logits(policy.backend.forward_sequences(p_ids, p_mask, t_ids)[0]), -1)
            logq = th.log_softmax(policy.distribution_logits(ref_backend.forward_sequences(p_ids, p_mask, t_ids)[0]), -1)
            total += float((logp.exp() * (logp - logq)).sum())
    return total / max(1, len(generations))


def format_table(rows: dict[str, dict[str, float]], digits: int = 4) -> str:
    """A Markdown table with one column per row name (e.g. before / after)."""
    names = list(rows)
    keys = [k for k in ("rouge-1", "rouge-2", "rouge-l", "bleu", "meteor", "reward", "kl", "gen_len")
            if any(k in r for r in rows.values())]
    lines = ["| metric | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for key in keys:
        cells = [f"{rows[n][key]:.{digits}f}" if key in rows[n] else "" for n in names]
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- training
class _CurveRecorder:
    """An SB3 callback (built lazily) that records the mean episode reward of every rollout."""

    @staticmethod
    def make():
        from stable_baselines3.common.callbacks import BaseCallback

        class CurveRecorder(BaseCallback):
            def __init__(self):
                super().__init__()
                self.points: list[tuple[int, float]] = []

            def _on_step(self) -> bool:
                return True

            def _on_rollout_end(self) -> None:
                buf = self.model.ep_info_buffer
                if buf:
                    self.points.append((self.num_timesteps, float(np.mean([e["r"] for e in buf]))))

        return CurveRecorder()


def _plot_curve(points: list[tuple[int, float]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    if points:
        x, y = zip(*points)
        ax.plot(x, y, marker=".")
    ax.set_xlabel("generated tokens (env steps)")
    ax.set_ylabel("mean episode reward (last 100)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _prepare_out(cfg: TrainConfig) -> Path:
    out = Path(cfg.out)
    if out.exists() and any(out.iterdir()):
        if cfg.resume:
            if not (out / "checkpoint.zip").exists():
                raise TextEnvsError(f"--resume: no checkpoint.zip in {str(out)!r} to resume from.")
            return out
        if not cfg.overwrite:
            raise TextEnvsError(
                f"Output folder {str(out)!r} exists and is not empty: choose another --out, pass --resume to "
                "continue its run, or --overwrite to replace it."
            )
        shutil.rmtree(out)
    elif cfg.resume:
        raise TextEnvsError(f"--resume: output folder {str(out)!r} does not exist.")
    out.mkdir(parents=True, exist_ok=True)
    return out


def train(cfg: TrainConfig, log=print) -> dict[str, Any]:
    """Run one training job end to end; returns the before/after tables and the output paths."""
    import torch as th
    from stable_baselines3.common.utils import set_random_seed

    cfg.validate()
    out = _prepare_out(cfg)
    set_random_seed(cfg.seed)
    th.set_num_threads(max(1, os.cpu_count() or 1))
    venv = make_train_env(cfg)
    state_path = out / "state.json"
    if cfg.resume:
        state = json.loads(state_path.read_text())
        saved = TrainConfig(**{**state["config"], "resume": True, "out": cfg.out})
        cfg = saved
        model = algorithm_class(cfg.algo).load(out / "checkpoint.zip", env=venv, device=cfg.device)
        before = state["before"]
        log(f"resuming from {out / 'checkpoint.zip'} at {model.num_timesteps} of {cfg.steps} tokens")
    else:
        (out / "config.json").write_text(json.dumps(dataclasses.asdict(cfg), indent=1))
        model = build_model(cfg, venv, str(out / "tb"))
        log(f"evaluating the starting model on {cfg.eval_examples} {cfg.eval_split} examples ...")
        before, _ = evaluate_policy_on_split(model.policy, cfg)
        before["kl"] = 0.0
        state = {"config": dataclasses.asdict(cfg), "before": before}
        state_path.write_text(json.dumps(state, indent=1))
    start_lm = _starting_model(model, cfg)
    attach_baseline(venv, start_lm)

    curve = _CurveRecorder.make()
    remaining = cfg.steps - model.num_timesteps
    t0 = time.time()
    interrupted = False
    try:
        if remaining > 0:
            model.learn(remaining, callback=curve, progress_bar=_has_progress_bar(), reset_num_timesteps=not cfg.resume,
                        tb_log_name=cfg.algo)
    except KeyboardInterrupt:
        interrupted = True
    train_seconds = time.time() - t0
    model.save(out / "checkpoint.zip")
    if interrupted:
        log(f"\ninterrupted at {model.num_timesteps} of {cfg.steps} tokens: checkpoint saved to "
            f"{out / 'checkpoint.zip'}; continue with: text-envs train --out {cfg.out} --resume")
        return {"interrupted": True, "out": str(out)}

    log("evaluating the trained model ...")
    after, generations = evaluate_policy_on_split(model.policy, cfg, reference=start_lm)
    columns = {"start": before, cfg.algo: after}
    supervised = None
    if cfg.compare_supervised:
        log(f"supervised comparison: teacher forcing on {cfg.env} train references for the same "
            f"{train_seconds:.0f} s ...")
        columns["supervised, same time"] = supervised = supervised_same_time(cfg, venv, train_seconds, start_lm)
    table = format_table(columns)
    log(table)
    model.save(out / "model.zip")
    model.policy.save_pretrained(out / "hf")
    _plot_curve(curve.points, out / "learning_curve.png", f"{cfg.algo.upper()} on {cfg.env}")
    with open(out / "samples.md", "w") as f:
        for g in generations[:20]:
            f.write(f"**prompt**: {g['prompt']}\n\n**generated**: {g['prediction']}\n\n"
                    f"**reference**: {g['references'][0]}\n\n---\n\n")
    result = {"before": before, "after": after, "train_seconds": train_seconds, "tokens": model.num_timesteps,
              "config": dataclasses.asdict(cfg)}
    if supervised is not None:
        result["supervised"] = supervised
    (out / "results.json").write_text(json.dumps(result, indent=1))
    (out / "results.md").write_text(table + "\n")
    (out / "checkpoint.zip").unlink(missing_ok=True)
    log(f"wrote {out}: model.zip, hf/, results.md, samples.md, learning_curve.png, tb/")
    return result


def supervised_same_time(cfg: TrainConfig, venv: Any, seconds: float, start_lm: Any) -> dict[str, float]:
    """The starting model trained by teacher forcing on the train split's references for ``seconds`` of wall
    time (the same optimizer budget as the RL run), evaluated like the RL model."""
    import gymnasium as gym

    from sb3_ext import warm_start

    fresh = build_model(cfg, venv, None)  # the same starting weights, a fresh optimizer
    env = gym.make(cfg.env, split="train", **cfg.env_kwargs()).unwrapped
    # ~30 references a second fit this CPU; encode enough for the budget without tokenizing all 50,000
    n = min(env.num_examples, max(512, int(60 * seconds)))
    warm_start(fresh.policy, env, epochs=10**6, batch_size=16, learning_rate=cfg.supervised_lr, max_examples=n,
               update_reference=False, seed=cfg.seed, max_seconds=seconds)
    table, _ = evaluate_policy_on_split(fresh.policy, cfg, reference=start_lm)
    return table


def _has_progress_bar() -> bool:
    try:
        import rich  # noqa: F401
        import tqdm  # noqa: F401
    except ImportError:
        return False
    return True


def _starting_model(model: Any, cfg: TrainConfig):
    """The frozen starting weights (the policy's KL reference, or the model as given) for the KL column."""
    ref = getattr(model.policy, "reference_model", None)
    if ref is not None:
        return ref
    from sb3_ext.backends import load_model

    return load_model(cfg.model) if cfg.model else model.policy._default_model(None)[0]


# ---------------------------------------------------------------------------------------------- eval
def evaluate_saved(model_path: str | None, cfg: TrainConfig, log=print) -> dict[str, float]:
    """Metric table of a saved model (an SB3 zip or a ``train`` output folder); None: the shipped model."""
    import gymnasium as gym

    if model_path is None:
        from sb3_ext import LLMPolicy

        env = gym.make(cfg.env, split=cfg.eval_split, **cfg.env_kwargs())
        policy = LLMPolicy(env.observation_space, env.action_space, lambda _: 0.0, model=cfg.model,
                           tokenizer=env.unwrapped.tokenizer)
    else:
        path = Path(model_path)
        if path.is_dir():
            state = json.loads((path / "state.json").read_text()) if (path / "state.json").exists() else {}
            for key in ("env", "dataset", "reward", "max_new_tokens", "algo"):
                if key in state.get("config", {}) and getattr(cfg, key) == getattr(TrainConfig, key, None):
                    setattr(cfg, key, state["config"][key])
            path = path / "model.zip"
        if not path.exists():
            raise TextEnvsError(f"No saved model at {str(path)!r}: expected an SB3 .zip or a `text-envs train` folder.")
        policy = algorithm_class(cfg.algo).load(path, device=cfg.device).policy
    table, generations = evaluate_policy_on_split(policy, cfg)
    log(format_table({cfg.eval_split: table}))
    for g in generations[:3]:
        log(f"\nprompt   : {g['prompt'][:200]}\ngenerated: {g['prediction']}\nreference: {g['references'][0]}")
    return table


# ---------------------------------------------------------------------------------------------- bench
BENCH_METHODS = ("greedy", "sampled", "supervised", "ppo", "a2c", "trpo", "nlpo")
# TRPO is left out of the text-task presets for time: its cell of the small preset (two updates over 1,024-token
# rollouts of 256-token prompts) took 291 s and 8.0 GB on 2 cores with sb3_ext.TRPO, against about 30 s for PPO
# (stock sb3-contrib TRPO ran out of 24 GB there). It runs on TextCopy-v0 and with --methods.
_TEXT_METHODS = tuple(m for m in BENCH_METHODS if m != "trpo")
BENCH_PRESETS: dict[str, dict[str, Any]] = {
    # small: one task, a short budget; finishes in well under 30 minutes on 2 CPU cores
    "small": dict(envs=("TextSummarization-v0",), steps=2_048, eval_examples=100, n_envs=16, methods=_TEXT_METHODS),
    "full": dict(envs=("TextSummarization-v0", "DialogueGeneration-v0", "MachineTranslation-v0"), steps=8_192,
                 eval_examples=200, n_envs=16, methods=_TEXT_METHODS),
}


def _bench_one(method: str, env_id: str, seed: int, preset: dict[str, Any]) -> dict[str, float]:
    """One (method, env, seed) cell: train with the preset's token budget (if the method trains), then
    evaluate greedily on the test split; returns the metric table plus KL to the start and wall time."""
    import torch as th
    from stable_baselines3.common.utils import set_random_seed

    cfg = TrainConfig(env=env_id, algo=method if method in ALGORITHMS else "ppo", steps=preset["steps"],
                      seed=seed, n_envs=preset["n_envs"], eval_examples=preset["eval_examples"])
    set_random_seed(seed)
    t0 = time.time()
    venv = make_train_env(cfg)
    model = build_model(cfg, venv, None)
    start_lm = _starting_model(model, cfg)
    attach_baseline(venv, start_lm)
    if method in ALGORITHMS:
        model.learn(cfg.steps)
    elif method == "supervised":
        import gymnasium as gym

        from sb3_ext import warm_start

        # the same budget in tokens: as many train references (EOS included) as fit in cfg.steps tokens
        env = gym.make(env_id, split="train", **cfg.env_kwargs()).unwrapped
        n_examples, used = 0, 0
        while n_examples < env.num_examples:
            n_tokens = len(env.tokenizer(env.example_text(n_examples)[1][0], add_special_tokens=False)["input_ids"])
            if used + n_tokens + 1 > cfg.steps:
                break
            used += n_tokens + 1
            n_examples += 1
        warm_start(model.policy, env, epochs=1, max_examples=max(1, n_examples), learning_rate=cfg.supervised_lr,
                   update_reference=False, seed=seed)
    if method == "sampled":
        from text_envs.evaluation import evaluate

        result = evaluate(cfg.env, model.policy, split=cfg.eval_split, n_examples=cfg.eval_examples,
                          deterministic=False, metrics=TABLE_METRICS, batch_size=32, seed=seed,
                          env_kwargs=cfg.env_kwargs())
        table = dict(result.table)
        table["kl"] = sequence_kl(model.policy, start_lm, cfg, result.generations)
    else:
        table, _ = evaluate_policy_on_split(model.policy, cfg, reference=start_lm)
    table["wall_s"] = time.time() - t0
    venv.close()
    del model
    th.set_num_threads(max(1, os.cpu_count() or 1))
    return table


def run_benchmark(preset_name: str, out: str, seeds: int = 3, overwrite: bool = False,
                  methods: Sequence[str] | None = None, log=print) -> list[dict[str, Any]]:
    """Every method on every env of a preset, with the same seeds and the same budget in generated tokens.

    :param methods: a subset of :data:`BENCH_METHODS`; None: the preset's (every method, or all but TRPO on
        the text tasks)

    Writes ``results.csv`` (one row per run), ``results.md`` (mean +- std over seeds) and ``results.png``.
    """
    import csv

    if preset_name not in BENCH_PRESETS:
        raise unknown_name("preset", preset_name, BENCH_PRESETS)
    preset = BENCH_PRESETS[preset_name]
    methods = tuple(methods if methods is not None else preset.get("methods", BENCH_METHODS))
    for m in methods:
        if m not in BENCH_METHODS:
            raise unknown_name("method", m, BENCH_METHODS)
    out_dir = _prepare_out(TrainConfig(out=out, overwrite=overwrite))
    rows: list[dict[str, Any]] = []
    for env_id in preset["envs"]:
        for method in methods:
            for seed in range(seeds):
                table = _bench_one(method, env_id, seed, preset)
                rows.append({"env": env_id, "method": method, "seed": seed, **table})
                log(f"{env_id} {method:<10} seed {seed}: " + ", ".join(
                    f"{k}={v:.4f}" for k, v in table.items() if k in ("rouge-l", "reward", "kl", "wall_s")))
    keys = sorted({k for r in rows for k in r} - {"env", "method", "seed"})
    with open(out_dir / "results.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["env", "method", "seed", *keys])
        writer.writeheader()
        writer.writerows(rows)
    md = [f"# text-envs bench, preset {preset_name!r}: {preset['steps']} generated tokens per training run, "
          f"{seeds} seeds, greedy evaluation on {preset['eval_examples']} test examples (mean ± std)\n"]
    shown = [k for k in ("rouge-1", "rouge-2", "rouge-l", "bleu", "meteor", "reward", "kl", "gen_len", "wall_s")
             if k in keys]
    for env_id in preset["envs"]:
        md += [f"\n## {env_id}\n", "| method | " + " | ".join(shown) + " |", "|---|" + "---:|" * len(shown)]
        for method in methods:
            runs = [r for r in rows if r["env"] == env_id and r["method"] == method]
            cells = []
            for k in shown:
                vals = np.array([r[k] for r in runs if k in r], dtype=float)
                cells.append(f"{vals.mean():.3f} ± {vals.std():.3f}" if len(vals) else "")
            md.append(f"| {method} | " + " | ".join(cells) + " |")
    (out_dir / "results.md").write_text("\n".join(md) + "\n")
    _plot_bench(rows, preset["envs"], methods, out_dir / "results.png")
    log("\n".join(md))
    log(f"wrote {out_dir}/results.md, results.csv, results.png")
    return rows


def _plot_bench(rows: list[dict[str, Any]], envs: tuple[str, ...], methods: tuple[str, ...], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(envs), figsize=(4.5 * len(envs), 3.5), squeeze=False)
    for ax, env_id in zip(axes[0], envs):
        key = "reward"
        means, stds = [], []
        for m in methods:
            vals = np.array([r[key] for r in rows if r["env"] == env_id and r["method"] == m], dtype=float)
            means.append(vals.mean() if len(vals) else math.nan)
            stds.append(vals.std() if len(vals) else 0.0)
        ax.bar(range(len(methods)), means, yerr=stds, capsize=3)
        ax.set_xticks(range(len(methods)), methods, rotation=30)
        ax.set_title(env_id)
        ax.set_ylabel("test reward (greedy)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
