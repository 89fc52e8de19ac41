"""rllib_ext: the Ray RLlib adapter: the text envs and a Hugging Face language-model policy on RLlib's new API stack.

The public API::

    algorithm_config(env_id: str, algo: str = "ppo", *, model=None, env_kwargs=None, num_env_runners=2,
                     num_envs_per_env_runner=8, num_learners=0, device="cpu", kl_coef=0.02, learning_rate=2e-4,
                     train_batch_size=1024, seed=0, temperature=1.0, top_k=None, baseline="auto",
                     top_p=None, value_mode="detached", compact_episodes=True,
                     learner_timeout_s=600.0) -> AlgorithmConfig
    save_pretrained(algo_or_module, path, tokenizer=None) -> None
    LMRLModule            # rllib_ext.module: TorchRLModule + ValueFunctionAPI (+ TargetNetworkAPI for APPO)
    TextVectorEnv         # rllib_ext.env: the env class every env runner builds (the native vector env)
    LearnerStalledError   # rllib_ext.learners: raised when IMPALA's/APPO's learner stops answering
    ALGOS                 # ("ppo", "impala", "appo")

Train the shipped tiny T5 on a text env with 2 env runners, then save the model in Hugging Face format::

    import ray
    from rllib_ext import algorithm_config, save_pretrained

    ray.init()                                   # or ray.init(address="auto") on a running cluster
    config = algorithm_config("TextSummarization-v0", "ppo", num_env_runners=2, train_batch_size=1024)
    algo = config.build_algo()
    for _ in range(10):
        result = algo.train()                    # one iteration: sample train_batch_size tokens, update
        print(result["env_runners"].get("episode_return_mean"))  # absent until an episode has ended
    algo.save_to_path("/tmp/ckpt")               # RLlib checkpoint (resume: Algorithm.from_checkpoint)
    save_pretrained(algo, "/tmp/model")          # transformers.AutoModelForSeq2SeqLM.from_pretrained("/tmp/model")
    algo.stop()
    ray.shutdown()

What it builds: RLlib's ``PPOConfig`` / ``IMPALAConfig`` / ``APPOConfig`` (torch) with

* the env: :class:`rllib_ext.env.TextVectorEnv` (the task's native vector env on every runner, and the greedy
  per-prompt baseline of the start model when ``baseline`` asks for it and the task scores finished texts);
* the module: :class:`rllib_ext.module.LMRLModule` (one cached decode step per token on the runners, one
  teacher-forced forward per episode on the learner); RLlib's default env-to-module connectors only batch the
  integer observations (no flattening or one-hot: those are opt-in pieces this config does not add);
* the episodes the runners ship: :mod:`rllib_ext.episodes` (``compact_episodes``): each step keeps its generated
  count only and each episode chunk its prompt once, and the learner rebuilds the observations (the module sees
  the same arrays either way; about 100 bytes per generated token shipped instead of 5 KB on TextSummarization-v0);
* the learner: :mod:`rllib_ext.learners`, RLlib's learner with the per-token KL penalty to the frozen start model
  (``r_t - kl_coef * (log pi(a_t) - log ref(a_t))``, the SB3 runs' penalty) applied before GAE / V-trace;
* for IMPALA/APPO the algorithm class :mod:`rllib_ext.algorithms` (RLlib's, without the driver's busy polling,
  failing with :class:`rllib_ext.learners.LearnerStalledError` when the learner stops answering for
  ``learner_timeout_s`` instead of hanging);
* the SB3 runs' hyper-parameters where they apply (``gamma=1``, ``lambda=1``, one epoch over the batch as one
  minibatch, no entropy bonus, gradient clipping at 0.5).

``train_batch_size`` counts env steps, i.e. generated tokens. The returned config can be changed further with
RLlib's own methods before ``build_algo()`` (e.g. ``config.training(num_epochs=4, minibatch_size=256)``).
``episode_return_mean`` is the env's reward: with a per-prompt baseline it is the reward minus the baseline's.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

__all__ = ["algorithm_config", "save_pretrained", "LMRLModule", "TextVectorEnv", "TokenKLPenalty", "ALGOS",
           "VALUE_MODES", "LearnerStalledError"]

#: the RLlib algorithms :func:`algorithm_config` builds
ALGOS = ("ppo", "impala", "appo")
#: value-head modes: "detached" (the value loss does not train the LM trunk; the SB3 runs' default) or "shared"
VALUE_MODES = ("detached", "shared")

_LAZY = {
    "LMRLModule": "rllib_ext.module",
    "TextVectorEnv": "rllib_ext.env",
    "TokenKLPenalty": "rllib_ext.connectors",
    "LearnerStalledError": "rllib_ext.learners",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'rllib_ext' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)


def algorithm_config(
    env_id: str,
    algo: str = "ppo",
    *,
    model: Any = None,
    env_kwargs: dict[str, Any] | None = None,
    num_env_runners: int = 2,
    num_envs_per_env_runner: int = 8,
    num_learners: int = 0,
    device: str = "cpu",
    kl_coef: float = 0.02,
    learning_rate: float = 2e-4,
    train_batch_size: int = 1024,
    seed: int = 0,
    temperature: float = 1.0,
    top_k: int | None = None,
    baseline: str = "auto",
    top_p: float | None = None,
    value_mode: str = "detached",
    compact_episodes: bool = True,
    learner_timeout_s: float = 600.0,
) -> Any:
    """An RLlib ``AlgorithmConfig`` (new API stack, torch) that trains a language model on a registered text env.

    :param env_id: a text env id (``"TextSummarization-v0"``, ``"TextCopy-v0"``, ...: ``text_envs.ENV_IDS``)
    :param algo: ``"ppo"``, ``"impala"`` or ``"appo"``
    :param model: ``None`` (the shipped tiny T5 when the env uses the shipped tokenizer, else a tiny T5 sized to
        the env's vocabulary), or anything :func:`lm_core.backends.load_model` accepts: a local path or hub name
        (must be loadable on every node), a transformers config or config dict (random weights, seeded by ``seed``
        so that every process starts from the same ones), a model object (pickled to every process)
    :param env_kwargs: keyword arguments of the task (``gym.make(env_id, **env_kwargs)``)
    :param num_env_runners: remote env-runner actors (0: sample in the driver)
    :param num_envs_per_env_runner: envs (rows of the native vector env) stepped together by each runner
    :param num_learners: remote learner actors (0: learn in the driver process)
    :param device: ``"cpu"`` or ``"cuda"``: where learners run (one GPU per learner; the runners stay on CPU)
    :param kl_coef: beta of the per-token KL penalty to the frozen start model (0: none, and no reference copy)
    :param learning_rate: Adam's learning rate
    :param train_batch_size: env steps (generated tokens) per training iteration, over all learners
    :param seed: seeds the runners' envs and sampling, and the start weights of a model built from a config
    :param temperature: the policy samples from softmax(logits / temperature); part of the trained distribution
    :param top_k: restrict the policy to the k most likely tokens of the frozen start model (``None``: no mask)
    :param baseline: ``"auto"`` (the start model's greedy text's reward subtracted per prompt on tasks that score
        finished texts; none on per-token tasks such as TextCopy-v0), ``"greedy"`` or ``"none"``
    :param top_p: restrict the policy to the nucleus of mass p of the frozen start model (``None``: no mask)
    :param value_mode: ``"detached"`` (value head on the LM's final hidden state, whose trunk the value loss does
        not train) or ``"shared"`` (the value loss trains the trunk too)
    :param compact_episodes: ship each episode's prompt once, not at every step (:mod:`rllib_ext.episodes`);
        ``False`` stores the env's full observation at every step (for an env that breaks the observation contract)
    :param learner_timeout_s: seconds IMPALA/APPO wait for an answer of the learner before failing the run with
        :class:`rllib_ext.learners.LearnerStalledError` (a dead learner thread fails it at once)
    :return: a ``PPOConfig`` / ``IMPALAConfig`` / ``APPOConfig``; ``config.build_algo()`` builds the algorithm
    """
    from text_envs.errors import TextEnvsError, unknown_name

    from .env import BASELINES, TextVectorEnv, check_env_id, env_config, uses_baseline

    if not isinstance(algo, str) or algo.lower() not in ALGOS:
        raise unknown_name("algo", str(algo), ALGOS)
    algo = algo.lower()
    env_id = check_env_id(env_id)
    if baseline not in BASELINES:
        raise unknown_name("baseline", baseline, BASELINES)
    if value_mode not in VALUE_MODES:
        raise unknown_name("value_mode", value_mode, VALUE_MODES)
    for name, value, low in (("num_env_runners", num_env_runners, 0), ("num_envs_per_env_runner",
                             num_envs_per_env_runner, 1), ("num_learners", num_learners, 0),
                             ("train_batch_size", train_batch_size, 1)):
        if not isinstance(value, int) or value < low:
            raise TextEnvsError(f"expected {name} to be an int >= {low}, got {value!r}")
    for name, value, allow_zero in (("kl_coef", kl_coef, True), ("learning_rate", learning_rate, False),
                                    ("temperature", temperature, False),
                                    ("learner_timeout_s", learner_timeout_s, False)):
        if not (value >= 0 if allow_zero else value > 0):  # NaN fails both
            raise TextEnvsError(f"expected {name} {'>=' if allow_zero else '>'} 0, got {value}")
    if top_k is not None and not (isinstance(top_k, int) and top_k >= 1):
        raise TextEnvsError(f"expected top_k to be None or an int >= 1, got {top_k!r}")
    if top_p is not None and not 0.0 < top_p <= 1.0:
        raise TextEnvsError(f"expected top_p in (0, 1], got {top_p}")
    if device != "cpu" and not str(device).startswith("cuda"):
        raise TextEnvsError(f"expected device 'cpu' or 'cuda', got {device!r}")
    learners = max(num_learners, 1)
    if train_batch_size % learners:
        raise TextEnvsError(f"expected train_batch_size ({train_batch_size}) to be a multiple of num_learners "
                            f"({num_learners}): each learner gets an equal share")

    import gymnasium as gym
    from ray.rllib.core.rl_module.rl_module import RLModuleSpec

    from .learners import LMAPPOTorchLearner, LMIMPALATorchLearner, LMPPOTorchLearner
    from .module import LMRLModule

    env_cfg = env_config(env_id, env_kwargs, baseline, model, seed)
    probe = gym.make(env_id, **env_cfg["env_kwargs"])
    uses_baseline(probe, baseline)  # "greedy" on a per-token task: fail here
    per_learner = train_batch_size // learners
    common: dict[str, Any] = dict(lr=learning_rate, train_batch_size_per_learner=per_learner, gamma=1.0,
                                  grad_clip=0.5, grad_clip_by="global_norm", vf_loss_coeff=0.5, entropy_coeff=0.0)
    if algo == "ppo":
        from ray.rllib.algorithms.ppo import PPOConfig

        config = PPOConfig().training(
            **common, lambda_=1.0, clip_param=0.2, num_epochs=1, minibatch_size=per_learner, use_kl_loss=False,
            kl_coeff=0.0,
            # minibatches of consecutive steps: an episode's steps mostly share a minibatch, so the learner runs
            # about one teacher-forced forward per episode, not one per (shuffled) step
            shuffle_batch_per_epoch=False)
        learner_class: type = LMPPOTorchLearner
        fragment: int | str = "auto"
    else:
        from ray.rllib.algorithms.appo import APPOConfig
        from ray.rllib.algorithms.impala import IMPALAConfig

        from .algorithms import LMAPPO, LMIMPALA

        cls, algo_class, learner_class = ((IMPALAConfig, LMIMPALA, LMIMPALATorchLearner) if algo == "impala"
                                          else (APPOConfig, LMAPPO, LMAPPOTorchLearner))
        config = cls(algo_class=algo_class).training(**common)
        # V-trace's time-major batch: fragments of whole-ish episodes, a divisor of the batch per runner
        fragment = max(1, min(64, per_learner // max(num_envs_per_env_runner * max(num_env_runners, 1), 1)))
    env_to_module = None
    if compact_episodes:
        import functools

        from .episodes import compact_observations_connector

        env_to_module = functools.partial(compact_observations_connector,
                                          pad_token_id=int(probe.unwrapped.pad_token_id),
                                          vocab_size=int(probe.action_space.n))
    config = (
        config.environment(env=TextVectorEnv, env_config=env_cfg, disable_env_checking=True)
        .framework("torch")
        .env_runners(num_env_runners=num_env_runners, num_envs_per_env_runner=num_envs_per_env_runner,
                     gym_env_vectorize_mode=gym.VectorizeMode.VECTOR_ENTRY_POINT, rollout_fragment_length=fragment,
                     num_cpus_per_env_runner=1, env_to_module_connector=env_to_module)
        .learners(learner_class=learner_class, num_learners=num_learners,
                  num_gpus_per_learner=1 if str(device).startswith("cuda") else 0,
                  learner_config_dict={"kl_coef": float(kl_coef), "learner_timeout_s": float(learner_timeout_s)})
        .rl_module(rl_module_spec=RLModuleSpec(module_class=LMRLModule, model_config={
            "model": model, "model_seed": int(seed), "temperature": float(temperature), "top_k": top_k,
            "top_p": top_p, "kl_coef": float(kl_coef), "value_mode": value_mode}))
        .debugging(seed=seed)
    )
    return config


def save_pretrained(algo_or_module: Any, path: str | os.PathLike, tokenizer: Any = None) -> None:
    """Save the trained language model in Hugging Face format (and the env's tokenizer), loadable with
    ``AutoModelForSeq2SeqLM`` / ``AutoModelForCausalLM.from_pretrained(path)``.

    :param algo_or_module: an RLlib ``Algorithm`` built from :func:`algorithm_config` (the learner's current weights
        are saved) or an :class:`LMRLModule`
    :param path: output directory (created)
    :param tokenizer: the tokenizer to save beside the model; ``None``: the module's (the shipped one) or else the
        env's (from the algorithm's config)
    """
    from ray.rllib.algorithms.algorithm import Algorithm
    from ray.rllib.core import DEFAULT_MODULE_ID

    from lm_core.actor_critic import frozen_copy
    from text_envs.errors import TextEnvsError

    from .module import LMRLModule, as_tensors

    if isinstance(algo_or_module, LMRLModule):
        module, weights = algo_or_module, None
    elif isinstance(algo_or_module, Algorithm):
        module = algo_or_module.get_module(DEFAULT_MODULE_ID)
        if not isinstance(module, LMRLModule):
            raise TextEnvsError(f"expected an algorithm whose module is an LMRLModule (rllib_ext.algorithm_config), "
                                f"got {type(module).__name__}")
        weights = algo_or_module.learner_group.get_weights(module_ids=[DEFAULT_MODULE_ID])[DEFAULT_MODULE_ID]
        if tokenizer is None and module.tokenizer is None and "env_id" in algo_or_module.config.env_config:
            import gymnasium as gym

            cfg = algo_or_module.config.env_config
            tokenizer = gym.make(cfg["env_id"], **cfg.get("env_kwargs", {})).unwrapped.tokenizer
    else:
        raise TextEnvsError(f"expected an RLlib Algorithm or an LMRLModule, got {type(algo_or_module).__name__}")
    lm = frozen_copy(module.model)
    if weights is not None:  # the learner's weights: the runners' copy may lag an asynchronous update
        lm.load_state_dict(as_tensors(weights, prefix="model."))
    os.makedirs(path, exist_ok=True)
    lm.save_pretrained(os.fspath(path))
    tokenizer = tokenizer if tokenizer is not None else module.tokenizer
    if tokenizer is not None:
        tokenizer.save_pretrained(os.fspath(path))
