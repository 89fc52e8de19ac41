"""The algorithms ``text-envs train --algo`` and ``text-envs bench --methods`` run: names, classes, which engine
runs which, and the default settings per algorithm and per env.

    from text_envs_app.algorithms import make_config
    cfg = make_config(env="TextCopy-v0", algo="grpo", steps=4096)   # the registry's defaults, then yours
    train(cfg)

Names (``--algo``): ``ppo``, ``a2c``, ``trpo``, ``nlpo`` (SB3 / sb3-contrib with :class:`sb3_ext.LLMPolicy`),
``grpo``, ``rloo``, ``reinforce``, ``raft``, ``dpo`` (``sb3_ext``'s classes of the same names, constructed like
SB3's: ``Cls(LLMPolicy, env, **kwargs)``) and ``supervised`` (teacher forcing on the train references, with
``--filter-reward T``: only those whose reward is at least ``T``; :func:`train_supervised`). ``--engine rllib``
runs ``ppo``, ``impala`` and ``appo``.

Defaults: :data:`ENV_DEFAULTS` holds the settings an env needs beyond :class:`~text_envs_app.config.TrainConfig`'s
own (``TextCopy-v0``: a toy task whose 4-token texts make the main job's 2,048-token rollouts two gradient
steps per 4,096 tokens), :data:`ALGO_DEFAULTS` those of an algorithm. The command line lays them under the
flags and the config file the user gives (:func:`make_config`); a ``TrainConfig(...)`` built by hand takes
only its own field defaults.
"""

from __future__ import annotations

import inspect
import itertools
from typing import Any

from text_envs.errors import TextEnvsError, unknown_name
from text_envs_app.algorithm_rules import (  # noqa: F401  (the registry's names, kept here for their users)
    DEFAULT_GROUP_SIZE,
    ENGINE_ALGORITHMS,
    GROUP_ALGORITHMS,
    RLLIB_ALGORITHMS,
    SB3_ALGORITHMS,
    check_settings,
    frozen_modules,
    group_size,
)

LIBRARY_CLASSES = {"grpo": "GRPO", "rloo": "RLOO", "reinforce": "REINFORCE", "raft": "RAFT", "dpo": "DPO"}
"""The algorithms whose class is ``sb3_ext.<name>``."""
PPO_STYLE = ("ppo", "nlpo")
"""Algorithms that take ``n_epochs``, ``batch_size``, ``clip_range`` and ``target_kl`` (SB3's PPO)."""

ENV_DEFAULTS: dict[str, dict[str, Any]] = {
    # 4-token texts: the main job's 32 envs x 64 steps made one rollout of 512 texts per 2,048 tokens, so --steps
    # 4096 was 2 Adam steps and left the reward at 0.000 greedy / 0.117 sampled. 8 steps per env (256 tokens, 64
    # texts a rollout), 4 epochs of 64-token minibatches and a 5x larger learning rate make it 64 Adam steps. The KL
    # coefficient stays (0.02): without a reference the random start model could not be rebuilt for the kl column.
    "TextCopy-v0": dict(n_steps=8, n_epochs=4, batch_size=64, learning_rate=1e-3, supervised_lr=1e-3),
}
"""Settings by env id, for every algorithm (below the flags the user gives)."""
ALGO_DEFAULTS: dict[str, dict[str, Any]] = {}
"""Settings by algorithm, for every env (below :data:`ENV_DEFAULTS` and the flags)."""
MAIN_JOB_FREEZE = "encoder,shared,decoder.block.0,decoder.block.1,decoder.block.2.layer.0,decoder.block.2.layer.1"
"""The main job's ``--freeze``: everything of the shipped T5 but its last decoder block's feed-forward layer (and the
decoder's final layer norm)."""
MAIN_JOB_STEPS = 122_880
"""The main job's generated tokens (60 rollouts of 32 envs x 64 tokens): benchmarks/RESULTS.md section 23 (73,728 took
0.85 of the achievable gain over 10 seeds, 98,304 0.88)."""
ENV_ALGO_DEFAULTS: dict[tuple[str, str], dict[str, Any]] = {
    # the main job (guides/main_job.md, benchmarks/RESULTS.md sections 13, 16 and 18): the KL coefficient of the
    # frontier's J (RLOO's own beta is TRL's 0.05); the exact per-token KL in the loss and 2 epochs per rollout;
    # only the last decoder block's feed-forward layer trains (the shipped T5's submodule names: a --model of the
    # user's trains every weight unless --freeze is given): weights shared by every prompt's reading (encoder,
    # embedding, attention) stay the start model's, so the KL spent on openings worded otherwise stays near the
    # KL on the training ones, and lr 2e-4 with 122,880 tokens takes the gain in distribution too
    ("TextContinuation-v0", "rloo"): dict(group_size=8, learning_rate=2e-4, steps=MAIN_JOB_STEPS, kl_coef=0.5,
                                          kl_mode="exact", n_epochs=2, freeze=MAIN_JOB_FREEZE),
}
"""Settings of one (env, algorithm) pair (above :data:`ENV_DEFAULTS`, below the flags)."""


def check_combination(engine: str, algo: str) -> None:
    """Refuse an algorithm that ``engine`` does not run, naming the algorithms it does and the engine that runs
    ``algo`` (if any)."""
    if engine not in ENGINE_ALGORITHMS:
        raise unknown_name("engine", engine, tuple(ENGINE_ALGORITHMS))
    if algo in ENGINE_ALGORITHMS[engine]:
        return
    others = [e for e, names in ENGINE_ALGORITHMS.items() if algo in names]
    if not others:
        raise unknown_name("algorithm", algo, tuple(dict.fromkeys(a for names in ENGINE_ALGORITHMS.values()
                                                                  for a in names)))
    raise TextEnvsError(
        f"--engine {engine} does not run --algo {algo}: it runs {', '.join(ENGINE_ALGORITHMS[engine])}. "
        f"--algo {algo} runs on --engine {' or '.join(others)}."
    )


def defaults(env: str, algo: str) -> dict[str, Any]:
    """The registry's settings of ``algo`` on ``env``: :data:`ALGO_DEFAULTS`, then :data:`ENV_DEFAULTS`, then
    :data:`ENV_ALGO_DEFAULTS` (each over the one before). A group algorithm gets ``group_size``."""
    values: dict[str, Any] = {}
    if algo in GROUP_ALGORITHMS:
        values["group_size"] = DEFAULT_GROUP_SIZE
    values.update(ALGO_DEFAULTS.get(algo, {}))
    values.update(ENV_DEFAULTS.get(env, {}))
    values.update(ENV_ALGO_DEFAULTS.get((env, algo), {}))
    return values


def make_config(**values: Any):
    """A :class:`~text_envs_app.config.TrainConfig` of ``values`` laid over the registry's defaults for its env
    and algorithm (:func:`defaults`): what ``text-envs train`` builds from its flags. Without ``algo`` an env's
    default algorithm (:data:`text_envs_app.config.DEFAULT_ALGO`) is taken on ``--engine sb3``. With a ``model``
    of the user's, a default ``freeze`` is dropped (its names are the shipped T5's submodules), and with ``lora_r``
    (the adapters are what trains)."""
    from text_envs_app.config import DEFAULT_ALGO, TrainConfig

    fields = {f.name: f.default for f in TrainConfig.__dataclass_fields__.values()}
    env, engine = values.get("env", fields["env"]), values.get("engine", fields["engine"])
    algo = values.get("algo", DEFAULT_ALGO.get(env, fields["algo"]) if engine == "sb3" else fields["algo"])
    base = {"algo": algo, **defaults(env, algo)} if engine == "sb3" else {}
    # a default --freeze names the shipped T5's submodules (not another model's), and LoRA trains its adapters
    if values.get("model") is not None or values.get("lora_r") is not None:
        base.pop("freeze", None)
    return TrainConfig(**{**base, **values})


def algorithm_class(algo: str) -> type:
    """The class that trains ``algo`` on ``--engine sb3`` (``supervised`` and ``nlpo``: SB3's PPO, the holder of
    the policy and its optimizer; the supervised steps run outside ``learn``)."""
    if algo in ("ppo", "nlpo", "supervised"):
        from stable_baselines3 import PPO

        return PPO
    if algo == "a2c":
        from stable_baselines3 import A2C

        return A2C
    if algo == "trpo":
        from sb3_ext.trpo import TRPO  # sb3-contrib's, with its actor gradients in one backward pass

        return TRPO
    if algo in LIBRARY_CLASSES:
        import sb3_ext

        cls = getattr(sb3_ext, LIBRARY_CLASSES[algo], None)
        if cls is None:
            raise TextEnvsError(f"--algo {algo}: this installation's sb3_ext has no {LIBRARY_CLASSES[algo]} class "
                                f"(update text-envs); it runs {', '.join(available_algorithms())}.")
        return cls
    raise unknown_name("algorithm", algo, SB3_ALGORITHMS)


def available_algorithms() -> tuple[str, ...]:
    """The ``--engine sb3`` algorithms this installation can build (each library class importable)."""
    import sb3_ext

    return tuple(a for a in SB3_ALGORITHMS if a not in LIBRARY_CLASSES or hasattr(sb3_ext, LIBRARY_CLASSES[a]))


def algorithm_kwargs(cfg: Any, common: dict[str, Any]) -> dict[str, Any]:
    """The constructor keywords of ``cfg.algo``'s class: ``common`` (policy, env, learning rate, n_steps, gamma,
    GAE lambda, vf_coef, max_grad_norm, buffer, policy_kwargs, seed, device, logging) plus the algorithm's own.

    For ``sb3_ext``'s classes: ``n_epochs``, ``clip_range`` as ``epsilon``, ``ent_coef``, ``batch_size`` (tokens)
    as whole texts of ``max_new_tokens``, an explicit ``kl_coef`` as ``beta`` (None: the class's default),
    ``--filter-reward`` as RAFT's ``reward_threshold``, ``--baseline`` as REINFORCE's; each only where the
    constructor takes it (:func:`constructor_parameters`). The group size is the env's (``--group-size``)."""
    kwargs = dict(common)
    algo = cfg.algo
    if algo in PPO_STYLE or algo == "supervised":
        kwargs.update(batch_size=cfg.rollout_batch_size(), n_epochs=cfg.n_epochs, clip_range=cfg.clip_range,
                      ent_coef=cfg.ent_coef, target_kl=cfg.target_kl)
    elif algo == "a2c":
        # Adam, as for every other algorithm here: SB3's A2C default, RMSprop, starts with steps about 10x the
        # learning rate (its squared-gradient average starts at 0) and knocked the shipped model 5 nats away
        kwargs.update(ent_coef=cfg.ent_coef, use_rms_prop=False)
    elif algo == "trpo":  # no clip, entropy or grad-norm settings; its own line search
        for key in ("vf_coef", "max_grad_norm"):
            kwargs.pop(key, None)
        kwargs.update(batch_size=cfg.rollout_batch_size(), target_kl=0.01)
    else:
        params = constructor_parameters(algorithm_class(algo))
        policy_kwargs = dict(kwargs.get("policy_kwargs") or {})
        for key in ("kl_coef", "kl_target"):  # these classes take the KL coefficient themselves (beta)
            policy_kwargs.pop(key, None)
        kwargs["policy_kwargs"] = policy_kwargs
        kwargs = {k: v for k, v in kwargs.items() if k in params}  # no GAE, value loss or rollout buffer
        T = int(common["env"].observation_space["generated_ids"].shape[0])
        wanted: dict[str, Any] = dict(n_epochs=cfg.n_epochs, epsilon=cfg.clip_range, ent_coef=cfg.ent_coef)
        if cfg.batch_size is not None:  # tokens, as for PPO; these classes take minibatches of whole texts
            wanted["batch_size"] = max(1, cfg.batch_size // T)
        if cfg.kl_coef is not None:  # TRL's name; None: the algorithm's own default (GRPO 0, RLOO 0.05, DPO 0.1)
            wanted["beta"] = cfg.kl_coef
        if cfg.filter_reward is not None:
            wanted["reward_threshold"] = cfg.filter_reward
        if cfg.kl_mode is not None:  # rloo's "reward" / "exact", grpo's "loss" / "reward"
            wanted["kl_mode"] = cfg.kl_mode
        if algo == "reinforce":  # --baseline greedy: ReMax; none: the reward itself; auto: the batch mean
            wanted["baseline"] = {"greedy": "greedy", "none": "none"}.get(cfg.baseline, "batch")
        if cfg.kl_anchor:
            wanted["kl_anchor"] = varied_openings_anchor(cfg)
        if cfg.freeze is not None:
            wanted["frozen_modules"] = frozen_modules(cfg)
        kwargs.update({k: v for k, v in wanted.items() if k in params})
    return kwargs


ANCHOR_PROMPTS = 512
"""Openings of text_envs.data.reviews_varied that --kl-anchor draws its texts for (16 per update)."""


def varied_openings_anchor(cfg: Any) -> Any:
    """The :class:`sb3_ext.algorithms.kl_anchor.KLAnchor` of ``--kl-anchor``: :data:`ANCHOR_PROMPTS` openings of the
    second family of review openings, encoded as the train env encodes its prompts (its template and length)."""
    import gymnasium as gym
    import numpy as np

    from sb3_ext.algorithms.kl_anchor import KLAnchor

    if cfg.env != "TextContinuation-v0" or cfg.data_spec() is not None:
        raise TextEnvsError("--kl-anchor anchors on TextContinuation-v0's second family of openings (its embedded "
                            f"data): leave it out with --env {cfg.env} or a dataset of your own.")
    env = gym.make(cfg.env, split="train", **{**cfg.env_kwargs(), "varied_openings": 1.0}).unwrapped
    try:
        encoded = [env.encode_prompt(env.example_text(i)[0]) for i in range(ANCHOR_PROMPTS)]
        return KLAnchor(np.stack([ids for ids, _ in encoded]), np.stack([mask for _, mask in encoded]),
                        coef=cfg.kl_anchor, max_new_tokens=env.max_new_tokens, eos_token_id=env.eos_token_id,
                        pad_token_id=env.pad_token_id, seed=cfg.seed)
    finally:
        env.close()


def constructor_parameters(cls: type) -> set[str]:
    """The keyword names ``cls(...)`` accepts: its ``__init__``'s, and those of the parent ``__init__`` that its
    ``**kwargs`` reach, up the MRO until an ``__init__`` without ``**kwargs``."""
    names: set[str] = set()
    for klass in cls.__mro__:
        if "__init__" not in vars(klass):
            continue
        params = inspect.signature(vars(klass)["__init__"]).parameters
        names |= {n for n, p in params.items() if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL) and n != "self"}
        if not any(p.kind == p.VAR_KEYWORD for p in params.values()):
            break
    return names


# ---------------------------------------------------------------------------------------------- supervised
class ReferenceSubset:
    """The example-source interface of :func:`lm_core.warm_start.warm_start` (``num_examples``,
    ``example_text``, ``encode_prompt``, ``tokenizer``) over chosen examples of an env, in a given order
    (an index may repeat: a budget larger than one pass cycles through them again)."""

    def __init__(self, env: Any, indices: list[int]) -> None:
        self.env, self.indices = env, list(indices)
        self.tokenizer = env.tokenizer

    @property
    def num_examples(self) -> int:
        return len(self.indices)

    def example_text(self, i: int) -> tuple[str, list[str]]:
        return self.env.example_text(self.indices[i])

    def encode_prompt(self, text: str) -> Any:
        return self.env.encode_prompt(text)


def filtered_references(env: Any, threshold: float | None, batch: int = 256,
                        limit: int | None = None) -> tuple[list[int], int]:
    """``(indices, scored)``: the train examples whose first reference scores at least ``threshold`` under the env's
    reward (all of them when None), in order, stopping after ``limit`` kept; ``scored``: how many were read.

    :raises TextEnvsError: ``threshold`` on a task that pays per token (no reward of a finished text to filter by).
    """
    n = int(env.num_examples)
    if threshold is None:
        keep = list(range(n if limit is None else min(n, limit)))
        return keep, len(keep)
    reward = getattr(env, "reward", None)
    if reward is None:
        raise TextEnvsError(f"--filter-reward: {env.spec.id if env.spec else type(env).__name__} pays its reward per "
                            "token, so its references have no text reward to filter by; leave --filter-reward out.")
    keep: list[int] = []
    start = 0
    while start < n and (limit is None or len(keep) < limit):
        idx = list(range(start, min(n, start + batch)))
        texts = [env.example_text(i) for i in idx]
        scores = reward([refs[0] if refs else "" for _, refs in texts], [list(refs) or [""] for _, refs in texts],
                        [p for p, _ in texts])
        keep += [i for i, (s, (_, refs)) in zip(idx, zip(scores, texts)) if refs and s >= threshold]
        start += batch
    return keep[:limit] if limit is not None else keep, start if start < n else n


def train_supervised(policy: Any, cfg: Any, log=print) -> dict[str, Any]:
    """``--algo supervised``: teacher forcing (:func:`lm_core.warm_start.warm_start`, batches of 16, Adam at
    ``cfg.supervised_lr``) on train references, with ``cfg.filter_reward``: only those whose reward is at least it
    (TextContinuation-v0's embedded data: the positive half).

    Budget: the same token count as an RL run, ``cfg.steps`` tokens of references (each with its EOS) in the
    split's order, cycling through the kept references again when one pass is shorter (the RL methods count
    generated tokens; ``--compare-supervised`` spends wall time instead).

    :return: ``examples`` (texts trained on), ``distinct`` (different references among them), ``tokens``,
        ``scored`` (references read to find them), ``loss`` (the mean token loss).
    """
    import gymnasium as gym

    from lm_core.warm_start import warm_start

    env = gym.make(cfg.env, split="train", **cfg.env_kwargs()).unwrapped
    try:
        tokenizer = env.tokenizer

        def cost(i: int) -> int:  # a reference's tokens + EOS, cut to the text budget T, as warm_start trains it
            return min(len(tokenizer(env.example_text(i)[1][0], add_special_tokens=False)["input_ids"]) + 1, policy.T)

        kept, scored = filtered_references(env, cfg.filter_reward, limit=cfg.steps)
        if not kept:
            raise TextEnvsError(f"--filter-reward {cfg.filter_reward}: no train reference of {cfg.env} scores that "
                                f"much (read {scored:,}); lower it.")
        order, used = [], 0
        costs: dict[int, int] = {}
        for i in itertools.cycle(kept):  # in order, again from the first kept one while budget is left
            c = costs.setdefault(i, cost(i))
            if order and used + c > cfg.steps:
                break
            order.append(i)
            used += c
        what = f"whose reward is at least {cfg.filter_reward} ({len(kept):,} of {scored:,} read)" \
            if cfg.filter_reward is not None else ""
        log(f"supervised: teacher forcing on {len(order):,} train references {what}, {used:,} tokens ...")
        losses = warm_start(policy, ReferenceSubset(env, order), epochs=1, batch_size=16,
                            learning_rate=cfg.supervised_lr, update_reference=False, seed=cfg.seed)
    finally:
        env.close()
    return {"examples": len(order), "distinct": len(set(order)), "tokens": used, "scored": scored,
            "loss": float(losses[-1]) if losses else float("nan")}


def env_baseline(cfg: Any) -> str:
    """The env-side baseline of ``cfg`` (``TrainConfig.baseline``): as given, except that ``"auto"`` is ``"none"``
    for ``sb3_ext``'s algorithms and ``supervised``: they bring their own baseline (the group's texts, the
    leave-one-out mean, the greedy text of REINFORCE's ``baseline="greedy"``) or rank raw rewards (RAFT's
    threshold, DPO's pairs), where a reward shifted by the start model's greedy text would mislead them."""
    if cfg.algo == "reinforce":  # its baseline="greedy" reads the env's greedy texts
        return "greedy" if cfg.baseline == "greedy" else "none"
    if cfg.baseline == "auto" and (cfg.algo in LIBRARY_CLASSES or cfg.algo == "supervised"):
        return "none"
    return cfg.baseline


def group_kwargs(cfg: Any) -> dict[str, Any]:
    """``make_text_vec_env``'s ``group_size`` keyword for ``cfg`` (nothing when it asks for no groups)."""
    k = group_size(cfg)
    return {"group_size": k} if k > 1 else {}


RLLIB_ONLY_FIELDS = ("num_env_runners", "num_learners")
"""TrainConfig fields that only ``--engine rllib`` reads (left out of an SB3 run's config.json)."""


def recorded_config(cfg: Any) -> dict[str, Any]:
    """The config.json of a run of ``cfg`` (a :class:`~text_envs_app.config.TrainConfig`): its fields with each
    default that the run resolves at run time written as the value it runs with (``kl_coef``, ``eval_decoding``,
    ``difficulty`` of the embedded data; on ``--engine sb3`` also ``threads``, ``batch_size`` and ``group_size``),
    and without the RLlib-only fields on ``--engine sb3``. ``TrainConfig(**recorded_config(cfg))`` trains as
    ``cfg`` does (``--resume`` rebuilds the run from it). A None that is kept means "off" (no ``top_k`` mask, no
    ``target_kl``) or "not given" (no ``dataset``), or a default the algorithm class keeps to itself."""
    import dataclasses
    import os

    values = dataclasses.asdict(cfg)
    values["eval_decoding"] = cfg.decoding()
    if cfg.data_spec() is None and cfg.env != "TextCopy-v0":  # the embedded data's difficulty (env_kwargs)
        values["difficulty"] = cfg.embedded_difficulty()
    if cfg.engine != "sb3":  # RLlib: the learners' KL coefficient; its SB3-only fields stay at their defaults
        values["kl_coef"] = cfg.kl_coefficient()
        return values
    values = {k: v for k, v in values.items() if k not in RLLIB_ONLY_FIELDS}
    values["threads"] = cfg.threads or max(1, os.cpu_count() or 1)  # as train sets torch's threads
    values["group_size"] = group_size(cfg)
    if cfg.algo not in LIBRARY_CLASSES:  # the policy's per-token penalty and SB3's minibatch (algorithm_kwargs)
        values["kl_coef"] = cfg.kl_coefficient()
        values["batch_size"] = cfg.rollout_batch_size()
    elif cfg.kl_coef is None:  # these classes take the coefficient as beta, with a default of their own
        beta = _constructor_defaults(algorithm_class(cfg.algo)).get("beta")
        values["kl_coef"] = beta
    return values


def training_kl_coef(cfg: Any) -> float:
    """The KL coefficient the run of ``cfg`` trains with (the beta its frontier rows must be computed at): ``kl_coef``
    when given; otherwise the env's default for PPO, A2C, TRPO, NLPO and every RLlib run, and the algorithm class's
    own ``beta`` default for the library's critic-free classes (GRPO 0, RLOO 0.05, DPO 0.1; 0 where it has none)."""
    if cfg.kl_coef is not None or cfg.engine != "sb3" or cfg.algo not in LIBRARY_CLASSES:
        return float(cfg.kl_coefficient())
    return float(_constructor_defaults(algorithm_class(cfg.algo)).get("beta") or 0.0)


def _constructor_defaults(cls: type) -> dict[str, Any]:
    """The default of each keyword ``cls(...)`` accepts (:func:`constructor_parameters`'s, the nearest class's)."""
    found: dict[str, Any] = {}
    for klass in cls.__mro__:
        if "__init__" not in vars(klass):
            continue
        params = inspect.signature(vars(klass)["__init__"]).parameters
        for name, p in params.items():
            if p.default is not p.empty:
                found.setdefault(name, p.default)
        if not any(p.kind == p.VAR_KEYWORD for p in params.values()):
            break
    return found
