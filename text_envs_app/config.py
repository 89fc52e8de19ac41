"""The settings of a run: :class:`TrainConfig` (every ``text-envs train`` option is one of its fields, documented by
the docstring under it), the per-env defaults of its None fields, and the reading of a config file.

Checking a config (:meth:`TrainConfig.validate`) builds no env and reads no data: the jobs then build the evaluation
split once (:func:`text_envs_app.evaluation.check_eval_split`), so that a bad data file stops a run before its output
folder is made.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from text_envs.errors import TextEnvsError, unknown_name
from text_envs_app.algorithm_rules import RLLIB_ALGORITHMS
from text_envs_app.algorithm_rules import SB3_ALGORITHMS as ALGORITHMS

ENGINES = ("sb3", "rllib")
BASELINES = ("auto", "greedy", "none")
VEC_ENVS = ("native", "dummy", "subproc")
TABLE_METRICS = ("rouge-1", "rouge-2", "rouge-l", "bleu", "meteor")
DEFAULT_KL_COEF = {"TextContinuation-v0": 0.5}
"""``TrainConfig.kl_coef`` when None, by env (0.02 for every other env)."""
DEFAULT_ALGO = {"TextContinuation-v0": "rloo"}
"""The algorithm ``text-envs train`` runs on an env when ``--algo`` is not given (on ``--engine sb3``; PPO for every
other env, and for a ``TrainConfig(...)`` built by hand): on the main job RLOO with the KL in its reward estimates
the gradient of J = reward - kl_coef * KL itself, and took 0.663 of the achievable gain where PPO took 0.271
(guides/main_job.md; its settings: text_envs_app.algorithms.ENV_ALGO_DEFAULTS)."""
DEFAULT_DECODING = {"TextContinuation-v0": "sampled"}
"""``TrainConfig.eval_decoding`` when None, by env (greedy for every other env)."""
DEFAULT_DIFFICULTY = {"TextContinuation-v0": 1}
"""``TrainConfig.difficulty`` when None, by env (3 for every other env)."""
DEFAULT_OOD_SPLIT = {"TextContinuation-v0": "ood"}
"""``TrainConfig.ood_split`` when None, by env, for the embedded data (none for every other env or for own data)."""
HACKING_METRICS = ("distinct-1", "distinct-2", "self-bleu", "mean_words", "repeated_ngrams", "validity",
                   "sentiment-judge", "judge_disagreement")
"""Rows of the results table that catch reward hacking (text_envs.diversity.HACKING_METRICS, without importing it)."""
FRONTIER_KEYS = ("optimum_reward", "optimum_kl", "optimum_J", "optimum_J_corrected", "start_J", "best_of_n_at_kl",
                 "model_reward", "model_kl", "model_J", "gain_share")
"""Rows of the main job's table that place a trained model against its start model's limit (text_envs_app.frontier)."""
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
    """ppo, a2c, trpo, nlpo (PPO with a top-p action mask from a periodically synced copy of the policy), grpo, rloo,
    reinforce, raft, dpo or supervised (teacher forcing on the train references, --filter-reward); with --engine
    rllib: ppo, impala or appo. The command line adds each env's and algorithm's defaults (text_envs_app.algorithms),
    and without --algo runs the env's default algorithm: rloo on TextContinuation-v0 (DEFAULT_ALGO), ppo elsewhere"""
    group_size: int | None = None
    """k envs write for the same prompt (grpo, rloo, raft, dpo compare a group's k texts; a multiple of --n-envs);
    None: 4 for those algorithms, 1 (no groups) for the others"""
    filter_reward: float | None = None
    """--algo supervised: train only on references whose reward is at least this (TextContinuation-v0: the positive
    half); --algo raft: keep the samples whose reward is at least this"""
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
    trust_remote_code: bool = False
    """let transformers run the Python code a --model ships (its config.json's auto_map); never implied: a --resume
    or an eval of such a run needs it again on the command line"""
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
    threads: int | None = 1
    """torch's CPU threads (default 1: with other work on the cores, more threads spin against it and a run can
    be 10-80x slower; docs/guides/performance.md); None: one per core. The trained figures depend on it (float
    sums round in another order), so a run repeats exactly only at the same thread count"""
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
    kl_mode: str | None = None
    """--algo rloo: "reward" (the text's KL off its reward, TRL's) or "exact" (the same gradient with less noise:
    each token pays the KL of the tokens after it in its advantage, and the KL at the token, exact over the
    vocabulary, in the loss); --algo grpo: "loss" (k3 in the loss, TRL's) or "reward"; None: the algorithm's own
    (sb3_ext.algorithms.policy_gradient, guides/main_job.md)"""
    kl_anchor: float = 0.0
    """--algo grpo, rloo or reinforce on TextContinuation-v0's embedded data: at every optimizer step, add this times
    the exact KL to the starting model of 16 texts the policy writes for review openings of another wording
    (text_envs.data.reviews_varied; sb3_ext.algorithms.kl_anchor) to the loss, so the model stays near its start
    beyond the training openings too (guides/main_job.md, generalisation); 0: none"""
    freeze: str | None = None
    """--algo grpo, rloo, reinforce, raft or dpo: the LM's submodules that training leaves as they are, comma
    separated (e.g. encoder,shared: the shipped T5's encoder and token embedding, so prompts are read as the start
    model reads them, on other wording too: guides/main_job.md, generalisation); dotted names reach deeper and '*'
    matches any part (decoder.block.*.layer.0: every decoder block's self-attention); None: every weight is
    trained"""
    lora_r: int | None = None
    """train LoRA adapters of this rank in place of the model's weights (Hu et al. 2021; needs peft: pip install
    peft): the KL penalty's reference is the base model with its adapters disabled (no second copy while training;
    the evaluation loads the start model once more), and hf/ holds the merged model; None: the weights themselves
    train"""
    lora_alpha: int | None = None
    """LoRA's scale numerator (an adapter's update is scaled by lora_alpha / lora_r); None: 2 x --lora-r"""
    lora_target_modules: str | None = None
    """the linear layers that get adapters, comma separated (e.g. q,k,v,o); None: peft's default for the model's
    architecture (T5: q,v; GPT-2: c_attn)"""
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
    frontier_samples: int = 16
    """texts sampled from the start model per test prompt after training, to place the trained model against the
    start model's limit at the run's KL coefficient: the optimum of reward - kl_coef * KL, best-of-n at the trained
    model's KL and the share of the achievable gain (text-envs frontier gives the whole curve); 0: skip it"""
    curve_points: int = 9
    """greedy evaluations on the learning curve (learning_curve.png), the start and the end included, evenly
    spaced in tokens; 0: none (the plot then shows the sampled episode reward only)"""
    curve_examples: int = 32
    """validation prompts of each greedy evaluation on the learning curve (the same prompts every time)"""
    best_of_n: int = 4
    """n of --eval-decoding best-of-n: the samples drawn per prompt, the highest-reward one kept"""
    eval_decoding: str | None = None
    """how the evaluation decodes: "greedy", "best-of-n" (the best of --best-of-n samples per prompt by the reward;
    its KL to the policy is at most log n - (n-1)/n, the table's kl_bound), or "sampled" (one text per prompt at
    the policy's temperature, seeded by --seed); None: sampled for TextContinuation-v0 (a preference task: the start
    model's most likely text can already be positive while half its samples are not, and the samples are what RL
    changes), greedy otherwise.
    The table gives the other decoding's reward and KL too"""
    eval_split: str = "test"
    """the held-out split to evaluate on (TextContinuation-v0 also has "ood": openings worded unlike the training
    generator's)"""
    ood_split: str | None = None
    """a second held-out split, evaluated after training beside --eval-split in a table of its own (the start and
    the trained model: reward, KL to the start model, the hacking metrics, the share of the achievable gain), to see
    whether what training bought holds on prompts worded otherwise; None: "ood" for TextContinuation-v0's embedded
    data (400 openings whose templates and vocabulary the training generator never uses), none for the other envs
    and for data of your own; "none": skip it"""
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
        if self.eval_decoding not in (None, "greedy", "sampled", "best-of-n"):
            raise TextEnvsError(f"--eval-decoding must be greedy, sampled or best-of-n, got {self.eval_decoding!r}.")
        if self.best_of_n < 1:
            raise TextEnvsError(f"--best-of-n must be at least 1 (samples per prompt), got {self.best_of_n}.")
        from text_envs_app.algorithm_rules import check_settings

        check_settings(self)  # --group-size, --filter-reward
        if self.difficulty is not None and self.difficulty not in DIFFICULTIES:
            raise TextEnvsError(f"--difficulty must be one of {DIFFICULTIES}, got {self.difficulty}.")
        for name in ("steps", "n_envs", "n_steps", "batch_size", "n_epochs", "eval_examples", "curve_examples",
                     "threads"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise TextEnvsError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}.")
        if self.ood_split is not None and (not isinstance(self.ood_split, str) or not self.ood_split.strip()):
            raise TextEnvsError(f"--ood-split must name a split of the env (e.g. ood) or be none, got "
                                f"{self.ood_split!r}.")
        if self.frontier_samples == 1 or self.frontier_samples < 0:
            raise TextEnvsError(f"--frontier-samples must be 0 (skip the start model's limit) or at least 2, got "
                                f"{self.frontier_samples}.")
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
                    "compare_supervised": False, "group_size": None, "filter_reward": None, "kl_anchor": 0.0,
                    "freeze": None,
                    "lora_r": None, "lora_alpha": None, "lora_target_modules": None,
                    "kl_mode": None,
                    "trust_remote_code": False}  # RLlib's learners load the model without it
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
        """Refuse contradictory data options, and options the env does not take (listing those it does). The data
        itself is read when the env is built (:func:`text_envs_app.evaluation.check_eval_split`)."""
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

    def lora_config(self) -> dict[str, Any] | None:
        """``peft.LoraConfig`` keywords of ``--lora-r``/``--lora-alpha``/``--lora-target-modules`` (None: no LoRA)."""
        if self.lora_r is None:
            return None
        config: dict[str, Any] = dict(r=int(self.lora_r), lora_alpha=int(self.lora_alpha or 2 * self.lora_r),
                                      lora_dropout=0.0)
        if self.lora_target_modules is not None:
            config["target_modules"] = [m.strip() for m in self.lora_target_modules.split(",") if m.strip()]
        return config

    def decoding(self) -> str:
        """``eval_decoding``, or the env's default when None (see the field)."""
        return self.eval_decoding or DEFAULT_DECODING.get(self.env, "greedy")

    def generalisation_split(self) -> str | None:
        """``ood_split``, or the env's default when None (see the field); None when there is none to evaluate."""
        if self.ood_split is not None:
            return None if self.ood_split == "none" else self.ood_split
        if self.data_spec() is not None:
            return None
        return DEFAULT_OOD_SPLIT.get(self.env)

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

