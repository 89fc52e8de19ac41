"""The main job: train a language model with an SB3 algorithm on a text env, evaluate it, save it.

``text-envs train`` / ``eval`` / ``bench`` are thin wrappers over :func:`train`, :func:`evaluate_saved` and
:func:`run_benchmark`. Every option is a field of :class:`TrainConfig` (the CLI flags are generated from it,
and a JSON config file may hold them too).
"""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import re
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from text_envs.errors import TextEnvsError, unknown_name
from text_envs_app.curves import GreedyCurve, plot_learning_curve

ALGORITHMS = ("ppo", "a2c", "trpo", "nlpo")
RLLIB_ALGORITHMS = ("ppo", "impala", "appo")
ENGINES = ("sb3", "rllib")
BASELINES = ("auto", "greedy", "none")
VEC_ENVS = ("native", "dummy", "subproc")
TABLE_METRICS = ("rouge-1", "rouge-2", "rouge-l", "bleu", "meteor")
DEFAULT_KL_COEF = {"TextContinuation-v0": 0.5}
"""``TrainConfig.kl_coef`` when None, by env (0.02 for every other env)."""
DEFAULT_DECODING = {"TextContinuation-v0": "sampled"}
"""``TrainConfig.eval_decoding`` when None, by env (greedy for every other env)."""
DEFAULT_DIFFICULTY = {"TextContinuation-v0": 1}
"""``TrainConfig.difficulty`` when None, by env (3 for every other env)."""
TABLE_METRICS_BY_ENV = {"TextContinuation-v0": ("sentiment-classifier",)}
"""Metrics beside the reward in the results table, where the lexical ones against references say nothing: a
continuation is trained for VADER's sentiment, and the shipped learned classifier is a second, independent judge."""


def table_metrics(env_id: str) -> tuple[str, ...]:
    """The metrics of ``env_id``'s results table (beside ``reward``, ``kl``, ``start_ppl`` and ``gen_len``)."""
    return TABLE_METRICS_BY_ENV.get(env_id, TABLE_METRICS)


@dataclass
class TrainConfig:
    """Settings of one training run. The PPO settings are pinned for text: SB3's defaults (2048 steps x
    10 epochs x batch 64) are tuned for control tasks, not for a language model whose episodes are texts."""

    env: str = "TextContinuation-v0"
    """the registered env id"""
    algo: str = "ppo"
    """ppo, a2c, trpo or nlpo (PPO with a top-p action mask from a periodically synced copy of the policy); with
    --engine rllib: ppo, impala or appo"""
    engine: str = "sb3"
    """the training engine: "sb3" (Stable-Baselines3 in this process) or "rllib" (Ray RLlib: env runners and
    learners as Ray actors, on this machine or on the Ray cluster of RAY_ADDRESS; pip install 'text-envs[rllib]')"""
    num_env_runners: int = 2
    """--engine rllib: Ray actors that step the envs and sample tokens (the n_envs are spread over them); 0 samples
    in the driver process"""
    num_learners: int = 0
    """--engine rllib: Ray actors that compute the updates (one per GPU with --device cuda); 0 updates in the driver
    process"""
    model: str | None = None
    """a model folder or hub name; default: the package's shipped warm-started tiny T5"""
    dataset: str | None = None
    """the env's data: a hub name, or one local .jsonl/.json/.csv file split into train/validation/test by a
    seeded rule (80/10/10, see --split-seed); default: the embedded data"""
    train_file: str | None = None
    """a local file of train rows (with --test-file, instead of --dataset: no split is made)"""
    validation_file: str | None = None
    """a local file of validation rows (optional, with --train-file)"""
    test_file: str | None = None
    """a local file of test rows, the evaluation's (with --train-file)"""
    split_seed: int = 0
    """seeds the split of a single --dataset file: its rows are shuffled by numpy's default_rng(split_seed) and
    the first 10% (at least 1) are the test split, the next 10% (at least 1) validation, the rest train"""
    prompt_field: str | None = None
    """the data's prompt column (dotted names such as translation.en reach into nested rows); default: the env's"""
    reference_field: str | None = None
    """the data's reference column (dotted names allowed); default: the env's"""
    source_lang: str | None = None
    """translation: the source language code (e.g. en)"""
    target_lang: str | None = None
    """translation: the target language code (e.g. ro)"""
    gym_kwargs: dict | None = None
    """any other gym.make keywords of the env, as a JSON object (--env-kwargs '{"max_prompt_tokens": 128}' or
    repeated --env-kwarg KEY=VALUE; "env_kwargs" in a config file)"""
    difficulty: int | None = None
    """difficulty of the embedded data (1-3); None: 1 for TextContinuation-v0 (the shipped model's warm-start data,
    trained to its validation plateau, so what a run adds is not more imitation) and 3 for the other tasks (the
    warm start's plateau is difficulty 1; difficulty 3's longer, shuffled documents leave room for RL)"""
    reward: str | None = None
    """the reward name (see text_envs.list_rewards()); default: the env's (ROUGE-L for summarization)"""
    steps: int = 32_768
    """generated tokens (env steps, all envs together) of RL training"""
    seed: int = 0
    """seeds the envs, torch and the evaluation"""
    threads: int | None = None
    """torch's CPU threads; None: one per core. The trained figures depend on it (float sums round in another
    order), so a run repeats exactly only at the same thread count"""
    n_envs: int = 32
    """envs stepped side by side (one batch of the policy per token)"""
    vec_env: str = "native"
    """how the n_envs are stepped: "native" (one natively vectorized env, NumPy arrays, sb3_ext.vec_env.TextVecEnv),
    "dummy" (SB3's DummyVecEnv over single envs: the same episodes and rewards) or "subproc" (SubprocVecEnv)"""
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
    kl_coef: float | None = None
    """KL penalty to the starting model, per token (0 disables it); None: 0.5 for TextContinuation-v0 (a
    preference reward that a policy can chase far from fluent text: benchmarks/bench_headline.py) and 0.02 for
    the other tasks"""
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
    curve_points: int = 9
    """greedy evaluations on the learning curve (learning_curve.png), the start and the end included, evenly
    spaced in tokens; 0: none (the plot then shows the sampled episode reward only)"""
    curve_examples: int = 32
    """validation prompts of each greedy evaluation on the learning curve (the same prompts every time)"""
    eval_decoding: str | None = None
    """how the evaluation decodes: "greedy", or "sampled" (one text per prompt at the policy's temperature, seeded
    by --seed); None: sampled for TextContinuation-v0 (a preference task: the start model's most likely text can
    already be positive while half its samples are not, and the samples are what RL changes), greedy otherwise.
    The table gives the other decoding's reward and KL too"""
    eval_split: str = "test"
    """the held-out split to evaluate on"""
    out: str = "runs/train"
    """output folder (refused if it exists, unless --resume or --overwrite)"""
    resume: bool = False
    """continue an interrupted run from its last checkpoint in --out (exactly: same weights as if never stopped)"""
    overwrite: bool = False
    """replace an existing output folder"""
    checkpoint_every: int = 4096
    """generated tokens between checkpoints in --out/checkpoints (at the next rollout boundary; the default run
    saves one every 2 rollouts, about a minute on 2 CPU cores); 0: only at the start, on Ctrl-C/SIGTERM and at
    the end. A kill -9 loses at most this many tokens of training"""

    def validate(self) -> None:
        import text_envs

        self.check_engine()
        if self.algo not in (ALGORITHMS if self.engine == "sb3" else RLLIB_ALGORITHMS):
            raise unknown_name("algorithm", self.algo, ALGORITHMS if self.engine == "sb3" else RLLIB_ALGORITHMS)
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
        if self.vec_env not in VEC_ENVS:
            raise unknown_name("vec env", self.vec_env, VEC_ENVS)
        if self.eval_decoding not in (None, "greedy", "sampled"):
            raise TextEnvsError(f"--eval-decoding must be greedy or sampled, got {self.eval_decoding!r}.")
        if self.difficulty is not None and self.difficulty not in DIFFICULTIES:
            raise TextEnvsError(f"--difficulty must be one of {DIFFICULTIES}, got {self.difficulty}.")
        for name in ("steps", "n_envs", "n_steps", "batch_size", "n_epochs", "eval_examples", "curve_examples",
                     "threads"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise TextEnvsError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}.")
        if self.curve_points == 1 or self.curve_points < 0:
            raise TextEnvsError(f"--curve-points must be 0 (no greedy curve) or at least 2 (the start and the end), "
                                f"got {self.curve_points}.")
        self.check_device()
        self.check_data()

    def check_engine(self) -> None:
        """Refuse an algorithm of the other engine, and settings the RLlib engine does not take, with the fix."""
        if self.engine not in ENGINES:
            raise unknown_name("engine", self.engine, ENGINES)
        if self.engine == "sb3" and self.algo in RLLIB_ALGORITHMS and self.algo not in ALGORITHMS:
            raise TextEnvsError(f"--algo {self.algo} runs on Ray RLlib: add --engine rllib (it takes "
                                f"{', '.join(RLLIB_ALGORITHMS)}). --engine sb3 takes {', '.join(ALGORITHMS)}.")
        if self.engine != "rllib":
            return
        if self.algo in ALGORITHMS and self.algo not in RLLIB_ALGORITHMS:
            raise TextEnvsError(f"--engine rllib takes --algo {', '.join(RLLIB_ALGORITHMS)}, got {self.algo}; "
                                f"{', '.join(a for a in ALGORITHMS if a not in RLLIB_ALGORITHMS)} run on --engine sb3.")
        for name in ("num_env_runners", "num_learners"):
            if getattr(self, name) < 0:
                raise TextEnvsError(f"--{name.replace('_', '-')} must be at least 0, got {getattr(self, name)}.")
        sb3_only = {"vec_env": "native", "value_lr_scale": 1.0, "kl_target": None, "target_kl": None,
                    "compare_supervised": False}
        given = [name for name, default in sb3_only.items() if getattr(self, name) != default]
        given += ["value_mode"] if self.value_mode == "separate" else []  # detached and shared run on RLlib too
        if given:
            raise TextEnvsError(f"--engine rllib does not take {', '.join('--' + n.replace('_', '-') for n in given)} "
                                "(SB3 settings): leave them out, or use --engine sb3.")

    def check_device(self) -> None:
        """Refuse a CUDA device on a machine without one (torch would fail later, or a run would record a device
        it never used); ``auto`` becomes the device actually used, so config.json records the truth."""
        import torch as th

        if self.device == "auto":
            self.device = "cuda" if th.cuda.is_available() else "cpu"
        elif self.device.startswith("cuda") and not th.cuda.is_available():
            build = f"torch {th.__version__}" + (" (a CPU-only build)" if th.version.cuda is None else "")
            raise TextEnvsError(
                f"--device {self.device}: no CUDA device is available here ({build}). Use --device cpu, or "
                "--device auto to take a GPU when there is one."
            )

    def check_data(self) -> None:
        """Refuse contradictory data options, and options the env does not take (listing those it does)."""
        if (self.train_file is None) != (self.test_file is None) or (self.validation_file and not self.train_file):
            raise TextEnvsError(
                "--train-file and --test-file go together (--validation-file is optional with them): got "
                f"train_file={self.train_file!r}, validation_file={self.validation_file!r}, "
                f"test_file={self.test_file!r}."
            )
        if self.train_file is not None and self.dataset is not None:
            raise TextEnvsError(
                f"Give either --dataset {self.dataset} (one file, split by a seeded rule, or a hub name) or "
                "--train-file/--test-file, not both."
            )
        if self.eval_split == "validation" and self.train_file is not None and self.validation_file is None:
            raise TextEnvsError("--split validation needs a --validation-file beside --train-file/--test-file.")
        if self.gym_kwargs is not None and not isinstance(self.gym_kwargs, dict):
            raise TextEnvsError(f"--env-kwargs must be a JSON object, got {type(self.gym_kwargs).__name__}.")
        if "split" in (self.gym_kwargs or {}):
            raise TextEnvsError("--env-kwargs cannot set 'split': training uses the train split and evaluation "
                                "--eval-split (text-envs eval: --split).")
        kwargs = self.env_kwargs()
        accepted = env_options(self.env)
        unknown = sorted(k for k in kwargs if k not in accepted)
        if unknown:
            flags = {k: "--" + k.replace("_", "-") for k in unknown}
            raise TextEnvsError(
                f"{self.env} takes no option {', '.join(repr(k) for k in unknown)} (from "
                f"{', '.join(sorted(set(flags.values())))} or --env-kwargs). Its options are: {', '.join(accepted)}."
            )
        import gymnasium as gym

        # build the evaluation split once now: a missing field, a malformed or too small file, an unreachable
        # hub stop here, before an output folder is made or a model is loaded
        gym.make(self.env, split=self.eval_split, **kwargs).close()

    def whole_rollout_steps(self) -> int:
        """``steps`` rounded up to whole rollouts of ``n_envs * n_steps`` tokens: SB3's on-policy algorithms
        collect and train on whole rollouts, so this is what a run trains."""
        rollout = self.n_envs * self.n_steps
        return -(-self.steps // rollout) * rollout

    def data_spec(self) -> Any:
        """The ``dataset=`` of gym.make: a hub name, a :class:`~text_envs.data.sources.SplitFile` of one local
        file (a seeded split), a ``{split: file}`` mapping of --train-file/--validation-file/--test-file, or
        None (the embedded data)."""
        from text_envs.data.sources import SplitFile, is_local_path

        if self.train_file is not None:
            files = {"train": self.train_file, "validation": self.validation_file, "test": self.test_file}
            return {k: v for k, v in files.items() if v is not None}
        if self.dataset is not None and is_local_path(self.dataset):
            return SplitFile(self.dataset, seed=self.split_seed)
        return self.dataset

    def rollout_batch_size(self) -> int:
        """The minibatch in tokens: ``batch_size``, or the whole rollout (``n_envs * n_steps``) when None."""
        return self.batch_size if self.batch_size is not None else self.n_envs * self.n_steps

    def kl_coefficient(self) -> float:
        """``kl_coef``, or the env's default when None (see the field)."""
        return self.kl_coef if self.kl_coef is not None else DEFAULT_KL_COEF.get(self.env, 0.02)

    def decoding(self) -> str:
        """``eval_decoding``, or the env's default when None (see the field)."""
        return self.eval_decoding or DEFAULT_DECODING.get(self.env, "greedy")

    def embedded_difficulty(self) -> int:
        """``difficulty``, or the env's default when None (see the field)."""
        if self.difficulty is not None:
            return self.difficulty
        return DEFAULT_DIFFICULTY.get(self.env, 3)

    def env_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {}
        data = self.data_spec()
        if data is not None:
            kwargs["dataset"] = data
        elif self.env != "TextCopy-v0":
            kwargs["difficulty"] = self.embedded_difficulty()
        for name in ("prompt_field", "reference_field", "source_lang", "target_lang"):
            if getattr(self, name) is not None:
                kwargs[name] = getattr(self, name)
        if self.reward is not None:
            kwargs["reward"] = self.reward
        if self.max_new_tokens is not None:
            kwargs["max_new_tokens"] = self.max_new_tokens
        if self.model is not None and self.env != "TextCopy-v0":
            kwargs["tokenizer"] = self.model  # a model folder or hub name carries its tokenizer
        for key, value in (self.gym_kwargs or {}).items():
            if key in kwargs and kwargs[key] != value:
                raise TextEnvsError(
                    f"The env option {key!r} is given twice: {kwargs[key]!r} (from its own flag or the defaults) and "
                    f"{value!r} (from --env-kwargs). Give it once."
                )
            kwargs[key] = value
        return kwargs


def env_options(env_id: str) -> list[str]:
    """The keyword arguments ``gym.make(env_id, ...)`` accepts: the task's own and, when it passes the rest on,
    those of :class:`text_envs.core.TextGenerationEnv` it does not set itself."""
    import inspect
    import re

    import gymnasium as gym
    from gymnasium.envs.registration import load_env_creator

    from text_envs.core import TextGenerationEnv

    cls = load_env_creator(gym.spec(env_id).entry_point)
    params = inspect.signature(cls.__init__).parameters
    names = [n for n, p in params.items() if n != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    if any(p.kind == p.VAR_KEYWORD for p in params.values()):
        try:  # the base keywords the task fills itself (TextCopy-v0's reward=None) are not the user's to give
            call = inspect.getsource(cls.__init__).split("super().__init__(", 1)[1]
            fixed = set(re.findall(r"(\w+)=", call.split("\n\n", 1)[0]))
        except (OSError, IndexError):
            fixed = set()
        base = inspect.signature(TextGenerationEnv.__init__).parameters
        names += [n for n, p in base.items() if p.kind == p.KEYWORD_ONLY and n not in names and n not in fixed]
    return names


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
        try:
            values = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise TextEnvsError(f"Config file {str(path)!r}: line {exc.lineno}: {exc.msg} (not valid JSON).") from None
    if not isinstance(values, dict):
        raise TextEnvsError(f"Config file {str(path)!r} must hold an object of options, got {type(values).__name__}.")
    values = {k.replace("-", "_"): v for k, v in values.items()}
    if "env_kwargs" in values:  # the name of the --env-kwargs flag; the field is gym_kwargs
        if "gym_kwargs" in values:
            raise TextEnvsError(f"Config file {str(path)!r} has both env_kwargs and gym_kwargs: give one.")
        values["gym_kwargs"] = values.pop("env_kwargs")
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    for key in values:
        if key not in known:
            raise unknown_name("config key", key, known | {"env_kwargs"})
    return values


# ---------------------------------------------------------------------------------------------- building
def make_train_env(cfg: TrainConfig):
    """The training VecEnv. Unless ``baseline="none"``, each env that scores finished texts is wrapped in
    ``SelfCriticalReward`` outside its ``Monitor`` (so logs keep the task reward), all sharing one
    ``BaselinePool`` (one batched decoding serves every env); :func:`attach_baseline` then gives it the starting
    model's greedy decoding. ``vec_env="native"`` (the default) builds the same thing as one natively vectorized
    env (``sb3_ext.vec_env.TextVecEnv``: the same episodes, rewards and infos, stepped as arrays)."""
    if cfg.vec_env == "native":
        from sb3_ext.vec_env import make_text_vec_env

        baseline = {"auto": "auto", "greedy": True, "none": False}[cfg.baseline]  # as _baseline_wrapper decides
        return make_text_vec_env(cfg.env, cfg.n_envs, seed=cfg.seed, env_kwargs=cfg.env_kwargs(), baseline=baseline,
                                 info_keywords=("generated_length",))
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv

    from text_envs.wrappers import BaselinePool

    return make_vec_env(
        f"text_envs:{cfg.env}",
        n_envs=cfg.n_envs,
        seed=cfg.seed,
        env_kwargs=cfg.env_kwargs(),
        monitor_kwargs={"info_keywords": ("generated_length",)},
        wrapper_class=_baseline_wrapper,
        wrapper_kwargs={"baseline": cfg.baseline, "pool": BaselinePool()},
        vec_env_cls=SubprocVecEnv if cfg.vec_env == "subproc" else DummyVecEnv,
    )


def _baseline_wrapper(env: Any, baseline: str, pool: Any) -> Any:
    from text_envs.wrappers import SelfCriticalReward

    if baseline == "none" or (baseline == "auto" and getattr(env.unwrapped, "reward", None) is None):
        return env  # "auto" on a per-token task (TextCopy-v0) has no text score to compare
    return SelfCriticalReward(env, pool=pool)


def attach_baseline(venv: Any, start_lm: Any) -> None:
    """Give the envs' ``SelfCriticalReward`` the frozen starting model's greedy decoding (no-op without one)."""
    from lm_core.backends import greedy_baseline
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
    policy_kwargs: dict[str, Any] = dict(model=cfg.model, tokenizer=tokenizer, kl_coef=cfg.kl_coefficient(),
                                         kl_target=cfg.kl_target, temperature=cfg.temperature, top_k=cfg.top_k,
                                         value_mode=cfg.value_mode, value_lr_scale=cfg.value_lr_scale,
                                         save_reference=False)  # run folders rebuild it from the start model
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
def evaluate_policy_on_split(policy: Any, cfg: TrainConfig, reference: Any = None, progress: bool = False,
                             per_example_metrics: bool = False) -> tuple[dict[str, float], list]:
    """The policy's texts for the first ``eval_examples`` of the held-out split, decoded as ``cfg.eval_decoding``
    says (greedy, or one sampled text per prompt), the metric table and the mean KL (nats per text) of the policy to
    ``reference`` (the starting model) along those texts; then the other decoding's reward (and KL) as
    ``greedy_reward``/``greedy_kl`` or ``sampled_reward``/``sampled_kl``. ``progress`` draws a bar of finished
    texts; ``per_example_metrics`` scores each text on its own too. Sampling is seeded by ``cfg.seed`` and the
    random states are restored afterwards, so an evaluation does not change a training run."""
    main = cfg.decoding()
    other = "greedy" if main == "sampled" else "sampled"
    result = _decode(policy, cfg, main, table_metrics(cfg.env), progress, per_example_metrics)
    table = MetricTable(result.table)
    table.language = result.language
    table.decoding = main
    table.tokenization = {k: m.group(1) for k, sig in result.signatures.items() if (m := _SIG_TOK.search(sig))}
    extra = _decode(policy, cfg, other, (), False, False)
    table[f"{other}_reward"] = float(extra.table["reward"])
    if reference is not None:
        table["kl"] = sequence_kl(policy, reference, cfg, result.generations)
        table[f"{other}_kl"] = sequence_kl(policy, reference, cfg, extra.generations)
        table["start_ppl"] = start_model_ppl(reference, cfg, result.generations)
    return table, result.generations


def _decode(policy: Any, cfg: TrainConfig, decoding: str, metrics: Sequence[str], progress: bool,
            per_example_metrics: bool) -> Any:
    """``text_envs.evaluation.evaluate`` of the held-out split, greedy or sampled, random states kept."""
    import random

    import torch as th

    from text_envs.evaluation import evaluate

    states = random.getstate(), np.random.get_state(), th.get_rng_state()
    try:
        return evaluate(cfg.env, policy, split=cfg.eval_split, n_examples=cfg.eval_examples,
                        deterministic=decoding == "greedy", metrics=metrics, batch_size=min(32, cfg.eval_examples),
                        seed=cfg.seed, env_kwargs=cfg.env_kwargs(), progress=progress,
                        per_example_metrics=per_example_metrics)
    finally:  # sampling reseeds torch: the run goes on as if nothing had been evaluated
        random.setstate(states[0])
        np.random.set_state(states[1])
        th.set_rng_state(states[2])


def sampled_reward(policy: Any, cfg: TrainConfig) -> tuple[float, list[dict[str, Any]]]:
    """Mean env reward of one text sampled from the policy (its own distribution, the one RL maximizes) for each
    of the first ``eval_examples`` held-out prompts, seeded by ``cfg.seed``, and those generations; the random
    states are restored afterwards."""
    result = _decode(policy, cfg, "sampled", (), False, False)
    return float(result.table["reward"]), result.generations


def start_model_ppl(reference_lm: Any, cfg: TrainConfig, generations: list[dict[str, Any]]) -> float:
    """The starting model's perplexity of the generated texts given their prompts (a fluency figure: it
    rises when the policy drifts into text the start model finds unlikely; see ``sb3_ext.fluency``)."""
    import gymnasium as gym

    from lm_core.fluency import start_model_perplexity

    env = gym.make(cfg.env, split=cfg.eval_split, **cfg.env_kwargs())
    return start_model_perplexity(reference_lm, env, generations)


def sequence_kl(policy: Any, reference_lm: Any, cfg: TrainConfig, generations: list[dict[str, Any]]) -> float:
    """Mean over texts of sum_t KL(pi(.|s_t) || pi_ref(.|s_t)), exact over the vocabulary, along each text: the
    token ids the policy generated (``generation["generated_ids"]``; the text re-tokenized when absent)."""
    import gymnasium as gym
    import torch as th

    from lm_core.backends import make_backend

    env = gym.make(cfg.env, split=cfg.eval_split, **cfg.env_kwargs()).unwrapped
    ref_backend = make_backend(reference_lm, policy.V)
    tok = env.tokenizer
    total = 0.0
    with th.no_grad():
        for gen in generations:
            ids, mask = env.encode_prompt(gen["prompt"])
            if gen.get("generated_ids"):  # the tokens the policy wrote (decoding then re-tokenizing may differ)
                tokens = [int(t) for t in gen["generated_ids"]]
            else:  # a generation without its ids: the text re-tokenized, then EOS
                tokens = tok(gen["prediction"], add_special_tokens=False)["input_ids"][: env.max_new_tokens - 1]
                tokens = list(tokens) + [env.eos_token_id]
            p_ids = th.as_tensor(ids[None], device=policy.device)
            p_mask = th.as_tensor(mask[None], device=policy.device)
            t_ids = th.as_tensor([tokens], device=policy.device)
            logp = th.log_softmax(policy.distribution_logits(policy.backend.forward_sequences(p_ids, p_mask, t_ids)[0]), -1)
            logq = th.log_softmax(policy.distribution_logits(ref_backend.forward_sequences(p_ids, p_mask, t_ids)[0]), -1)
            total += float((logp.exp() * (logp - logq)).sum())
    return total / max(1, len(generations))


_SIG_TOK = re.compile(r"(?:^|\|)tok:([^|]+)")


class MetricTable(dict):
    """A metric table ``{metric: value}`` that also remembers the target language and the tokenization each
    metric ran with (``{"bleu": "zh", "rouge-l": "unicode"}``, from the metrics' signatures); a plain dict
    for everything else (JSON, comparisons)."""

    language: str | None = None
    tokenization: dict[str, str] = {}
    decoding: str = "greedy"


def tokenization_note(rows: dict[str, dict[str, float]]) -> str:
    """One line naming the tokenization the table's metrics ran with (from any :class:`MetricTable` column),
    e.g. ``Tokenization (target language zh): bleu zh; rouge-1, rouge-2, rouge-l, meteor unicode.``"""
    table = next((r for r in rows.values() if getattr(r, "tokenization", None)), None)
    if table is None:
        return ""
    groups: dict[str, list[str]] = {}
    for metric, tok in table.tokenization.items():
        groups.setdefault(tok, []).append(metric)
    where = f" (target language {table.language})" if table.language else ""
    return f"Tokenization{where}: " + "; ".join(f"{', '.join(ms)} {tok}" for tok, ms in groups.items()) + "."


def format_table(rows: dict[str, dict[str, float]], digits: int = 4) -> str:
    """A Markdown table with one column per row name (e.g. before / after), then a line naming the
    tokenization the metrics ran with (:func:`tokenization_note`) when the columns carry it."""
    names = list(rows)
    keys = [k for k in ("rouge-1", "rouge-2", "rouge-l", "bleu", "meteor", "sentiment-classifier", "reward", "kl",
                        "start_ppl", "gen_len", "greedy_reward", "greedy_kl", "sampled_reward", "sampled_kl")
            if any(k in r for r in rows.values())]
    lines = ["| metric | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for key in keys:
        cells = [f"{rows[n][key]:.{digits}f}" if key in rows[n] else "" for n in names]
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    notes = [n for n in (decoding_note(rows), tokenization_note(rows)) if n]
    return "\n".join(lines) + "".join(f"\n\n{n}" for n in notes)


def decoding_note(rows: dict[str, dict[str, float]]) -> str:
    """One line saying how the table's texts were decoded, when it has the other decoding's rows too."""
    table = next((r for r in rows.values() if isinstance(r, MetricTable)), None)
    if table is None or not any(k in table for k in ("greedy_reward", "sampled_reward")):
        return ""
    if table.decoding == "sampled":
        return ("Texts: one sampled per test prompt (seeded), the metrics, kl and start_ppl along them; "
                "greedy_reward and greedy_kl: the greedy texts.")
    return "Texts: greedy; sampled_reward and sampled_kl: one text sampled per test prompt (seeded)."


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


def _prepare_out(cfg: TrainConfig) -> Path:
    """The output folder: made (emptied with ``overwrite``) for a new run, or checked for ``resume``."""
    out = Path(cfg.out)
    if cfg.resume:
        if not out.is_dir():
            raise TextEnvsError(f"--resume: output folder {str(out)!r} does not exist, so there is no run to "
                                "resume: start one without --resume.")
        if not any(out.iterdir()):
            raise TextEnvsError(f"--resume: output folder {str(out)!r} is empty, so there is no run to resume: "
                                "start one there without --resume.")
        if not (out / "config.json").is_file():
            raise TextEnvsError(f"--resume: {str(out)!r} is not a `text-envs train` output folder (it has no "
                                "config.json): give the --out of the run to continue.")
        if (out / "results.json").is_file() and not (out / "checkpoints").is_dir():
            raise TextEnvsError(f"--resume: the run in {str(out)!r} is finished (it has results.json), so there is "
                                "nothing to resume: use --overwrite to run it again, or another --out.")
        return out
    if out.exists() and any(out.iterdir()):
        if not cfg.overwrite:
            raise TextEnvsError(
                f"Output folder {str(out)!r} exists and is not empty: choose another --out, pass --resume to "
                "continue its run, or --overwrite to replace it."
            )
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    return out


def _empty_folder(out: Path, remove: bool) -> None:
    """Delete what a run wrote in ``out`` (and ``out`` itself when ``remove``)."""
    if remove:
        shutil.rmtree(out, ignore_errors=True)
        return
    for child in out.iterdir():
        if child.is_dir():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)


def train(cfg: TrainConfig, log=print) -> dict[str, Any]:
    """Run one training job end to end; returns the before/after tables and the output paths.

    Checkpoints (:mod:`text_envs_app.checkpoint`) go to ``out/checkpoints``: before training, every
    ``checkpoint_every`` tokens at a rollout boundary, on Ctrl-C or SIGTERM, and when training ends; they are
    removed once the results and the deliverable model (``model.zip``, ``hf/``) are written. ``resume=True``
    continues from the newest checkpoint that reads whole, exactly (see the README's "Reliability").
    ``engine="rllib"`` runs the job on Ray RLlib instead (:func:`text_envs_app.rllib_train.train_rllib`).
    """
    engine = cfg.engine
    if cfg.resume and (Path(cfg.out) / "config.json").is_file():  # --resume continues on the run's own engine
        engine = json.loads((Path(cfg.out) / "config.json").read_text()).get("engine", "sb3")
    if engine == "rllib":
        from text_envs_app.rllib_train import train_rllib

        return train_rllib(cfg, log)
    import torch as th
    from stable_baselines3.common.utils import set_random_seed

    from text_envs_app.checkpoint import (CheckpointCallback, CheckpointError, CheckpointStore, interrupt_guard,
                                          restore_state, save_model_file)

    cfg.validate()
    if not cfg.resume:
        cfg = _round_steps(cfg, log)
    existed = Path(cfg.out).exists()
    out = _prepare_out(cfg)
    hint = f"text-envs train --out {cfg.out} --resume"
    store = CheckpointStore(out / "checkpoints", resume_hint=hint)
    state_path = out / "state.json"
    ckpt = None
    if cfg.resume:
        saved = json.loads((out / "config.json").read_text())
        cfg = TrainConfig(**{**saved, "resume": True, "out": cfg.out})
        ckpt = store.load_latest(log) if state_path.is_file() else None
        if ckpt is None:  # stopped (kill -9, a crash) before its first checkpoint: nothing to keep
            log(f"--resume: {out} has no checkpoint yet (the run stopped before training began): starting it over "
                "with its saved settings")
            _empty_folder(out, remove=False)
            cfg = dataclasses.replace(cfg, resume=False)

    with interrupt_guard(None, log) as received:  # SIGTERM acts as Ctrl-C from here on
        try:
            set_random_seed(cfg.seed)
            th.set_num_threads(cfg.threads or max(1, os.cpu_count() or 1))
            venv = make_train_env(cfg)
            if ckpt is not None:
                model = ckpt.load_model(algorithm_class(cfg.algo), venv, cfg.device)
                state = json.loads(state_path.read_text())
                before = state["before"]
                log(f"resuming from {ckpt.path} at {ckpt.tokens:,} of {cfg.steps:,} tokens")
            else:
                (out / "config.json").write_text(json.dumps(dataclasses.asdict(cfg), indent=1))
                describe_data(cfg, log, out)
                model = build_model(cfg, venv, str(out / "tb"))
                log(f"evaluating the starting model on {eval_count(cfg):,} {cfg.eval_split} examples ...")
                before, start_generations = evaluate_policy_on_split(model.policy, cfg, progress=_has_progress_bar())
                before["kl"] = before["greedy_kl" if cfg.decoding() == "sampled" else "sampled_kl"] = 0.0
                before["start_ppl"] = start_model_ppl(_starting_model(model, cfg), cfg, start_generations)
                state = {"config": dataclasses.asdict(cfg), "before": before,
                         "start_samples": [{"example_index": g["example_index"], "prediction": g["prediction"]}
                                           for g in start_generations[:N_SAMPLES]]}
                state_path.write_text(json.dumps(state, indent=1))
        except KeyboardInterrupt:
            if ckpt is not None:
                log(f"\n{received['signal'] or 'SIGINT'}: stopped while resuming; the checkpoints are unchanged; "
                    f"continue with: {hint}")
            else:  # nothing worth keeping yet: leave no folder that neither a re-run nor --resume would take
                _empty_folder(out, remove=not existed)
                log(f"\n{received['signal'] or 'SIGINT'}: stopped before training began: nothing saved "
                    f"({'removed' if not existed else 'emptied'} {out}); run the same command to start again")
            return {"interrupted": True, "signal": received["signal"] or "SIGINT", "out": str(out)}
        start_lm = _starting_model(model, cfg)
        attach_baseline(venv, start_lm)

    curve = _CurveRecorder.make()
    extra = ckpt.state.get("extra", {}) if ckpt is not None else {}
    curve.points = [tuple(p) for p in extra.get("curve", [])]
    greedy = None
    if cfg.curve_points >= 2:  # greedy reward and KL to the start on fixed validation prompts, against tokens
        greedy = GreedyCurve.make(cfg, cfg.steps, cfg.curve_points, cfg.curve_examples, reference=start_lm,
                                  sampled=True)
        if ckpt is not None:
            greedy.restore(extra.get("curves", {}), model.num_timesteps)
    seconds_before = float(extra.get("train_seconds", 0.0))
    t0 = time.time()
    checkpoints = CheckpointCallback(store, cfg.checkpoint_every, log, extras=lambda: {
        "curve": list(curve.points), "train_seconds": seconds_before + time.time() - t0,
        **({"curves": {k: list(v) for k, v in greedy.curves().items()}} if greedy is not None else {})})
    callbacks = [curve] + ([greedy] if greedy is not None else []) + [checkpoints]
    callbacks += [_TokenProgressBar.make()] if _has_progress_bar() else []
    interrupted = None
    with interrupt_guard(checkpoints, log) as received:
        try:
            if ckpt is not None:
                restore_state(model, ckpt.state, log)  # last before learn(): it sets the random states
                checkpoints.last_saved = ckpt.tokens
            else:
                checkpoints.save_now(model)  # at 0 tokens: a resume never redoes the first evaluation
            remaining = cfg.steps - model.num_timesteps
            if remaining > 0:
                model.learn(remaining, callback=callbacks, reset_num_timesteps=ckpt is None, tb_log_name=cfg.algo)
            checkpoints.in_update = True  # from here a first Ctrl-C waits for the checkpoint below
            if model.num_timesteps > checkpoints.last_saved:
                checkpoints.save_now(model)  # training done: an interrupted evaluation loses no training
            if checkpoints.stop_requested:
                raise KeyboardInterrupt
        except KeyboardInterrupt:
            interrupted = received["signal"] or checkpoints.stop_requested or "SIGINT"
        except (EOFError, BrokenPipeError, ConnectionResetError) as e:  # a SubprocVecEnv worker died
            raise TextEnvsError(
                f"an env worker process died ({type(e).__name__}: {str(e) or 'its pipe closed'}) after "
                f"{model.num_timesteps:,} tokens (killed, out of memory, or a crash in the env: a crash prints the "
                f"worker's traceback above); {store.describe_latest()}; continue with: {hint}"
            ) from e
        except CheckpointError:
            raise  # a full disk: the message names the checkpoint kept and how to continue
        except TextEnvsError as e:  # e.g. a reward that raised or returned NaN: the message names the example
            raise TextEnvsError(f"{e}\ntraining stopped after {model.num_timesteps:,} tokens; "
                                f"{store.describe_latest()}; after fixing it, continue with: {hint}") from e
        if interrupted:
            saved_path = checkpoints.save_interrupted()
            what = f"checkpoint saved to {saved_path}" if saved_path is not None else store.describe_latest()
            dropped = model.num_timesteps - checkpoints.last_saved
            if dropped > 0:  # an unfinished rollout (never trained on), or an update stopped half-way
                what += f"; the {dropped:,} tokens generated since are dropped"
            log(f"\n{interrupted}: stopped at {checkpoints.last_saved:,} of {cfg.steps:,} tokens: {what}; continue "
                f"with: {hint}")
            return {"interrupted": True, "signal": interrupted, "out": str(out), "tokens": checkpoints.last_saved}
    train_seconds = seconds_before + time.time() - t0

    with interrupt_guard(None, log) as received:
        try:
            log("evaluating the trained model ...")
            after, generations = evaluate_policy_on_split(model.policy, cfg, reference=start_lm,
                                                          progress=_has_progress_bar())
            columns = {"start": before, cfg.algo: after}
            supervised = None
            if cfg.compare_supervised:
                log(f"supervised comparison: teacher forcing on {cfg.env} train references for the same "
                    f"{train_seconds:.0f} s ...")
                columns["supervised, same time"] = supervised = supervised_same_time(cfg, venv, train_seconds,
                                                                                     start_lm)
            table = format_table(columns)
            log(table)
            result = {"before": before, "after": after, "train_seconds": train_seconds, "tokens": model.num_timesteps,
                      "config": dataclasses.asdict(cfg)}
            if supervised is not None:
                result["supervised"] = supervised
            try:
                save_model_file(model, out / "model.zip")  # the deliverable: no optimizer moments or rebuildable reference
                model.policy.save_pretrained(out / "hf")
                plot_learning_curve(out / "learning_curve.png", f"{cfg.algo.upper()} on {cfg.env}",
                                    greedy.curves() if greedy else {}, curve.points,
                                    reward_name=cfg.reward or "reward")
                if greedy is not None:  # the curve's points, as plotted
                    result["curve"] = {"tokens": [t for t, _ in greedy.points],
                                       **{k: [v for _, v in pts] for k, pts in greedy.curves().items()}}
                write_samples(out / "samples.md", generations[:N_SAMPLES], state.get("start_samples", []), cfg.algo)
                (out / "results.md").write_text(table + "\n")
                (out / "results.json").write_text(json.dumps(result, indent=1))  # last: it marks the run finished
            except OSError as e:  # a full disk or a read-only folder
                raise TextEnvsError(
                    f"could not write the results in {out} ({'the disk is full' if e.errno == errno.ENOSPC else e}): "
                    f"training is complete and saved in {store.files()[0][1]}; free space, then run {hint} to "
                    "evaluate it and write them"
                ) from e
        except KeyboardInterrupt:
            log(f"\n{received['signal'] or 'SIGINT'} during the final evaluation: training is complete and saved "
                f"in {store.files()[0][1]}; run {hint} to evaluate it and write the results")
            return {"interrupted": True, "signal": received["signal"] or "SIGINT", "out": str(out),
                    "tokens": model.num_timesteps}
        store.remove_all()  # the run is finished: its resume state is no longer needed
    (out / "checkpoint.zip").unlink(missing_ok=True)  # written by versions before checkpoints/
    log(f"wrote {out}: model.zip, hf/, results.md, samples.md, learning_curve.png, tb/")
    return result


N_SAMPLES = 20  # texts shown in samples.md


def _round_steps(cfg: TrainConfig, log) -> TrainConfig:
    """``cfg`` with ``steps`` rounded up to whole rollouts, saying so when that changes it."""
    rounded = cfg.whole_rollout_steps()
    if rounded == cfg.steps:
        return cfg
    rollout = cfg.n_envs * cfg.n_steps
    log(f"--steps {cfg.steps:,} is not a whole number of rollouts ({cfg.n_envs} envs x {cfg.n_steps} steps = "
        f"{rollout:,} tokens each, and SB3 trains whole rollouts): training {rounded:,} tokens "
        f"({rounded // rollout} rollout{'s' if rounded // rollout > 1 else ''}); config.json records steps={rounded}")
    return dataclasses.replace(cfg, steps=rounded)


def eval_count(cfg: TrainConfig) -> int:
    """How many examples an evaluation of ``cfg`` scores: ``eval_examples``, or fewer when the split is smaller."""
    import gymnasium as gym

    env = gym.make(cfg.env, split=cfg.eval_split, **cfg.env_kwargs())
    n = int(env.unwrapped.num_examples)
    env.close()
    return min(n, cfg.eval_examples)


def describe_data(cfg: TrainConfig, log, out: Path | None = None) -> dict[str, Any] | None:
    """Say where the train and evaluation rows come from; for a single local file split by the seeded rule,
    print each split's size and write which rows went where to ``out/splits.json`` (1-based row numbers in
    file order). Warns loudly when the evaluation split is small."""
    from text_envs.data.sources import SplitFile

    data = cfg.data_spec()
    info: dict[str, Any] | None = None
    if isinstance(data, SplitFile):
        n_rows, parts = data.split_rows()
        info = {"file": data.path, "rows": n_rows, "seed": data.seed,
                "rule": "rows shuffled by numpy.random.default_rng(seed).permutation(rows); the first "
                        "round(0.1 * rows) (at least 1) are test, the next round(0.1 * rows) (at least 1) "
                        "validation, the rest train; each split keeps the file's order",
                **{name: [int(i) + 1 for i in parts[name]] for name in ("train", "validation", "test")}}
        where = f"; the row numbers of each are in {out / 'splits.json'}" if out is not None else ""
        log(f"data: {data.path}: {n_rows:,} rows, split by a seeded rule (--split-seed {data.seed}) into train "
            f"{len(parts['train']):,}, validation {len(parts['validation']):,} and test {len(parts['test']):,} "
            f"rows{where}")
        if out is not None:
            (out / "splits.json").write_text(  # one line per key: the row lists stay readable
                "{\n" + ",\n".join(f" {json.dumps(k)}: {json.dumps(v)}" for k, v in info.items()) + "\n}\n")
    elif isinstance(data, dict) and len(set(data.values())) == 1:
        log(f"data: every row of {next(iter(data.values()))}")
    elif isinstance(data, dict):
        log("data: " + ", ".join(f"{split} rows from {path}" for split, path in data.items()))
    n_eval = eval_count(cfg)
    if n_eval < cfg.eval_examples:
        log(f"note: the {cfg.eval_split} split has only {n_eval:,} examples, fewer than the {cfg.eval_examples:,} "
            f"asked: evaluating all {n_eval:,}")
    if n_eval < 20:
        log(f"WARNING: metrics on {n_eval} {cfg.eval_split} example{'s' if n_eval > 1 else ''} are noisy: a "
            "difference between two models may be chance")
    return info


def write_samples(path: Path, generations: list[dict[str, Any]], start_samples: list[dict[str, Any]],
                  name: str) -> None:
    """samples.md: for each prompt, the starting model's text, the trained model's text and the reference."""
    start = {s["example_index"]: s["prediction"] for s in start_samples}
    with open(path, "w") as f:
        for g in generations:
            f.write(f"**prompt**: {g['prompt']}\n\n")
            if g.get("example_index") in start:
                f.write(f"**start model**: {start[g['example_index']]}\n\n")
            f.write(f"**{name}**: {g['prediction']}\n\n")
            if g.get("references"):
                f.write(f"**reference**: {g['references'][0]}\n\n")
            f.write("---\n\n")


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


class _TokenProgressBar:
    """An SB3 callback (built lazily) drawing a tqdm bar of generated tokens whose rate is the run's average
    tokens per second so far (tqdm ``smoothing=0``), not a recent burst: rollouts alternate with updates that
    generate nothing, so an instantaneous rate overstates the run's speed."""

    @staticmethod
    def make():
        from stable_baselines3.common.callbacks import BaseCallback
        from tqdm import tqdm

        class TokenProgressBar(BaseCallback):
            def __init__(self):
                super().__init__()
                self.pbar = None

            def _on_training_start(self) -> None:
                # a resumed run starts at its checkpoint's tokens: the bar reads N/budget, never past it
                total, done = self.locals["total_timesteps"], self.model.num_timesteps
                self.pbar = tqdm(total=total, initial=done, smoothing=0, unit=" tokens", dynamic_ncols=True,
                                 mininterval=0.5,
                                 bar_format="training {percentage:3.0f}%|{bar}| {n:,}/{total:,} tokens "
                                            "[{elapsed}<{remaining}, {rate_noinv_fmt} average]")

            def _on_step(self) -> bool:
                self.pbar.update(self.training_env.num_envs)
                return True

            def _on_training_end(self) -> None:
                if self.pbar is not None:
                    self.pbar.refresh()
                    self.pbar.close()

        return TokenProgressBar()


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
    from lm_core.backends import load_model

    return load_model(cfg.model) if cfg.model else model.policy._default_model(None)[0]


# ---------------------------------------------------------------------------------------------- eval
RUN_DATA_KEYS = ("env", "dataset", "train_file", "validation_file", "test_file", "split_seed", "prompt_field",
                 "reference_field", "source_lang", "target_lang", "gym_kwargs", "difficulty", "reward",
                 "max_new_tokens")
"""The options of a training run that an evaluation of its model inherits (unless given again)."""
EVAL_KEYS = ("model", "eval_split", "eval_examples", "seed", "device")


def find_saved_model(model_path: str | None) -> dict[str, Any]:
    """What ``text-envs eval MODEL`` names: ``{"kind": "shipped" | "zip" | "hf", "path": ..., "run": the run's
    config.json values or {}}``. MODEL may be a ``text-envs train`` output folder, an SB3 ``.zip``, or a
    Hugging Face model folder (a run's ``hf/``, a ``save_pretrained`` folder) or hub name."""
    if model_path is None:
        return {"kind": "shipped", "path": None, "run": {}}
    path = Path(model_path).expanduser()

    def run_config(folder: Path) -> dict[str, Any]:
        for name in ("config.json", "state.json"):
            f = folder / name
            if f.is_file():
                values = json.loads(f.read_text())
                values = values.get("config", values) if name == "state.json" else values
                if isinstance(values, dict) and "env" in values and "algo" in values:
                    return values
        return {}

    if path.is_dir() and (path / "model.zip").is_file():
        return {"kind": "zip", "path": path / "model.zip", "run": run_config(path)}
    if path.is_dir() and (path / "hf" / "config.json").is_file() and run_config(path):  # an --engine rllib run
        return {"kind": "hf", "path": path / "hf", "run": run_config(path)}
    if path.is_file() and path.suffix == ".zip":
        return {"kind": "zip", "path": path, "run": run_config(path.parent)}
    if path.is_dir() and ((path / "config.json").is_file() and any(path.glob("*.safetensors"))
                          or any(path.glob("pytorch_model*.bin"))):
        return {"kind": "hf", "path": path, "run": run_config(path.parent)}
    if path.exists() or os.sep in model_path or model_path.endswith(".zip"):
        raise TextEnvsError(
            f"No saved model at {model_path!r}: expected a `text-envs train` output folder (with model.zip), an SB3 "
            ".zip, or a Hugging Face model folder (config.json + *.safetensors, such as a run's hf/)."
        )
    return {"kind": "hf", "path": model_path, "run": {}}  # a hub name: transformers says if it cannot load it


def _load_policy(found: dict[str, Any], cfg: TrainConfig) -> Any:
    """The policy of a saved model, built for ``cfg``'s env."""
    import gymnasium as gym

    if found["kind"] == "zip":
        order = [cfg.algo] + [a for a in ("ppo", "a2c", "trpo") if a != cfg.algo]
        errors = []
        for algo in dict.fromkeys(algorithm_class(a) for a in order):
            try:
                return algo.load(found["path"], device=cfg.device).policy
            except Exception as exc:  # a zip of another algorithm (or not an SB3 zip at all)
                errors.append(f"{algo.__name__}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
        raise TextEnvsError(f"Could not load {str(found['path'])!r} as an SB3 model ({'; '.join(errors)}).")
    from sb3_ext import LLMPolicy

    env = gym.make(cfg.env, split=cfg.eval_split, **cfg.env_kwargs())
    policy = LLMPolicy(env.observation_space, env.action_space, lambda _: 0.0, model=cfg.model,
                       tokenizer=env.unwrapped.tokenizer)
    env.close()
    return policy.to(cfg.device)


def evaluate_saved(model_path: str | None, cfg: TrainConfig, out: str | None = None, overwrite: bool = False,
                   log=print) -> dict[str, float]:
    """Evaluate a saved model greedily on ``cfg``'s evaluation split: print the metric table and a few samples;
    with ``out``, write ``results.md``, ``results.json`` and ``generations.jsonl`` (one line per text: prompt,
    generation, references, every metric) there.

    :param model_path: a ``text-envs train`` output folder, an SB3 ``.zip``, a Hugging Face model folder or hub
        name; None: the shipped model.
    :param cfg: the env, data and evaluation options (``eval_split``, ``eval_examples``, ``seed``, ``device``).
    """
    found = find_saved_model(model_path)
    if found["kind"] == "hf":
        cfg = dataclasses.replace(cfg, model=str(found["path"]))
    cfg.validate()
    out_dir = _prepare_out(TrainConfig(out=out, overwrite=overwrite)) if out is not None else None
    describe_data(cfg, log)
    policy = _load_policy(found, cfg)
    n = eval_count(cfg)
    what = {"shipped": "the shipped model", "zip": str(found["path"]), "hf": str(found["path"])}[found["kind"]]
    log(f"evaluating {what} greedily on {n:,} {cfg.eval_split} examples of {cfg.env} ...")
    table, generations = evaluate_policy_on_split(policy, cfg, progress=_has_progress_bar(), per_example_metrics=True)
    text = format_table({cfg.eval_split: table})
    log(text)
    for g in generations:  # a prompt-only file (TextContinuation-v0's "text" rows) has empty references
        g["references"] = [r for r in g.get("references") or [] if r.strip()]
    for g in generations[:3]:
        ref = f"\nreference: {g['references'][0]}" if g["references"] else ""
        log(f"\nprompt   : {g['prompt'][:200]}\ngenerated: {g['prediction']}{ref}")
    if out_dir is not None:
        (out_dir / "results.md").write_text(
            f"{what} on {n} {cfg.eval_split} examples of {cfg.env} (greedy)\n\n{text}\n")
        (out_dir / "results.json").write_text(json.dumps(
            {"model": what, "examples": n, "table": table,
             "config": {k: v for k, v in dataclasses.asdict(cfg).items() if k in RUN_DATA_KEYS + EVAL_KEYS}},
            indent=1))
        with open(out_dir / "generations.jsonl", "w", encoding="utf-8") as f:
            for g in generations:
                row = {"example_index": g["example_index"], "prompt": g["prompt"], "generation": g["prediction"]}
                if g.get("references"):
                    row["reference"] = g["references"][0] if len(g["references"]) == 1 else g["references"]
                row.update({"reward": g.get("reward"), "gen_len": g.get("gen_len"),
                            "finish_reason": g.get("finish_reason"), **g.get("metrics", {})})
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
        log(f"wrote {out_dir}: results.md, results.json, generations.jsonl")
    return table


# ---------------------------------------------------------------------------------------------- bench
_BENCH_NAMES = ("BENCH_METHODS", "BENCH_PRESETS", "run_benchmark", "_bench_one", "_plot_bench")


def __getattr__(name: str) -> Any:
    """``text-envs bench`` lives in :mod:`text_envs_app.bench`; its names stay importable from here
    (``experiment.run_benchmark``, ``experiment.BENCH_PRESETS``), loaded on first use (no import cycle)."""
    if name in _BENCH_NAMES:
        from text_envs_app import bench

        return getattr(bench, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
