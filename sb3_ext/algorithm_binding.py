"""How :class:`~sb3_ext.LLMPolicy` learns the SB3 algorithm that trains it, and what it does with it.

SB3's algorithms build their policy inside ``_setup_model`` as ``self.policy_class(observation_space,
action_space, lr_schedule, **policy_kwargs)``: the policy gets no handle on the algorithm. ``LLMPolicy`` needs
one, once, to

* record its model config in the algorithm's ``policy_kwargs`` (SB3 saves them in every zip and rebuilds the policy
  from them at ``load``: with the config and the state dict, ``PPO.load`` works offline, without a hub name);
* turn ``double_backward`` on for sb3-contrib's TRPO (Hessian-vector products through the attention);
* choose the rollout buffer (:func:`choose_minibatches`, :func:`ensure_kl_buffer`): SB3's shuffled minibatches
  are swapped for whole-episode ones when they would cost many forwards, and the KL penalty needs
  :class:`~sb3_ext.buffers.EpisodeRolloutBuffer`;
* bind an :class:`~sb3_ext.buffers.EpisodeRolloutBuffer` to the policy (the KL penalty) and the algorithm (its
  logger).

All of that is :func:`bind_algorithm` (``LLMPolicy.bind_algorithm``), the one entry point, idempotent. An
algorithm of this package, or any code that builds a policy by hand, may call it itself. For the stock classes
(``PPO(LLMPolicy, env)``, ``A2C``, sb3-contrib's ``TRPO``, and ``PPO.load``) ``LLMPolicy.__init__`` calls it with
what :func:`constructing_algorithm` reads, the one place in the package that reads the call stack: the
algorithm is the ``self`` of the ``_setup_model`` that is building the policy, and whether the user named a
rollout buffer is the ``rollout_buffer_class`` argument of that algorithm's constructor (SB3 replaces a missing
one by ``DictRolloutBuffer`` before the policy exists, so the attribute alone cannot tell).
"""

from __future__ import annotations

import inspect
import warnings
import weakref
from typing import Any

from stable_baselines3.common.buffers import DictRolloutBuffer

from text_envs.errors import TextEnvsError

from .buffers import EpisodeRolloutBuffer

__all__ = [
    "SPARSE_MINIBATCH_COST",
    "UNKNOWN_CHOICE",
    "sparse_minibatch_cost",
    "constructing_algorithm",
    "bind_algorithm",
    "bound_algorithm",
    "choose_minibatches",
    "ensure_kl_buffer",
    "swap_in_episode_buffer",
]

#: SB3's shuffled minibatches are replaced by whole-episode ones (or, for a buffer the user named, a warning
#: says what they cost) when they would make LLMPolicy run at least this many times the teacher-forced
#: forwards of EpisodeRolloutBuffer's minibatches (docs/guides/performance.md)
SPARSE_MINIBATCH_COST = 4.0

#: the ``rollout_buffer_class`` a constructor received when no constructor of the algorithm is building it
#: (``PPO.load``, a hand-made ``_setup_model`` call): whatever buffer the algorithm holds counts as chosen
UNKNOWN_CHOICE = object()

#: frames searched above ``LLMPolicy.__init__``: SB3's own chain is 2-4 deep (``__init__`` > ``_setup_model`` of
#: each class > the policy), a subclass adds a few
_MAX_DEPTH = 16


def sparse_minibatch_cost(n_steps: int, n_envs: int, batch_size: int | None, max_new_tokens: int) -> float:
    """Estimated forwards of SB3's shuffled minibatches over those of whole-episode minibatches (>= 1).

    A minibatch of ``b`` of ``R = n_steps * n_envs`` stored steps holds about
    ``k = 1 + (b - 1)(T - 1)/(R - 1)`` steps of an episode of ``T`` steps, so the grouped evaluation runs about
    ``b / k`` teacher-forced forwards where whole episodes need ``b / T``: a ratio of ``T / k``.

    :param n_steps: steps per env and rollout
    :param n_envs: envs
    :param batch_size: minibatch size (``None``: the whole rollout, ratio 1)
    :param max_new_tokens: ``T``, the longest episode (an upper bound on the ratio for shorter ones)
    """
    rows = n_steps * n_envs
    if not batch_size or batch_size >= rows:
        return 1.0
    per_episode = 1 + (batch_size - 1) * (max_new_tokens - 1) / max(rows - 1, 1)
    return max(1.0, min(max_new_tokens, batch_size) / per_episode)


def constructing_algorithm() -> tuple[Any, Any]:
    """The SB3 algorithm whose ``_setup_model`` is building a policy now, and the ``rollout_buffer_class`` its
    constructor received (``None``: left out; :data:`UNKNOWN_CHOICE`: no constructor of it is running); ``(None,
    UNKNOWN_CHOICE)`` outside any algorithm. Read from the call stack (the module docstring says why)."""
    from stable_baselines3.common.base_class import BaseAlgorithm

    algorithm, named = None, UNKNOWN_CHOICE
    frame = inspect.currentframe()
    try:
        for _ in range(_MAX_DEPTH):
            frame = frame.f_back if frame is not None else None
            if frame is None:
                break
            owner = frame.f_locals.get("self")
            if algorithm is None and isinstance(owner, BaseAlgorithm) and frame.f_code.co_name == "_setup_model":
                algorithm = owner
            elif (algorithm is not None and owner is algorithm and frame.f_code.co_name == "__init__"
                  and "rollout_buffer_class" in frame.f_locals):
                named = frame.f_locals["rollout_buffer_class"]
                break
        return algorithm, named
    finally:
        del frame


def bound_algorithm(policy: Any) -> Any:
    """The algorithm :func:`bind_algorithm` bound ``policy`` to, if it is still alive, else None."""
    ref = getattr(policy, "algorithm_ref", None)
    return ref() if ref is not None else None


def bind_algorithm(policy: Any, algorithm: Any, rollout_buffer_class: Any = UNKNOWN_CHOICE) -> None:
    """Wire ``policy`` (an ``LLMPolicy``) and the SB3 ``algorithm`` that trains it (see the module docstring).

    :param policy: the policy, already built
    :param algorithm: an SB3 ``BaseAlgorithm`` whose ``policy`` it is (or is about to be)
    :param rollout_buffer_class: what the algorithm's constructor received (``None``: left out, so a costly
        ``DictRolloutBuffer`` may be swapped for an ``EpisodeRolloutBuffer``; :data:`UNKNOWN_CHOICE`: not known,
        the buffer counts as chosen)
    """
    policy.algorithm_ref = weakref.ref(algorithm)
    if policy.double_backward is None:  # sb3-contrib's TRPO differentiates the actor's gradient again
        policy.double_backward = type(algorithm).__name__ == "TRPO"
    # recorded in the algorithm's saved policy_kwargs: PPO.load rebuilds from config + state dict, offline
    kwargs = dict(algorithm.policy_kwargs)
    kwargs.update(model=None, tokenizer=None, model_config=policy.model_config, reference_source=policy.reference_source)
    algorithm.policy_kwargs = kwargs
    if policy.kl_enabled:
        ensure_kl_buffer(policy, algorithm)
    else:
        choose_minibatches(policy, algorithm, rollout_buffer_class)
    if isinstance(getattr(algorithm, "rollout_buffer", None), EpisodeRolloutBuffer):
        algorithm.rollout_buffer.bind(policy, algorithm)


def choose_minibatches(policy: Any, algorithm: Any, rollout_buffer_class: Any = UNKNOWN_CHOICE) -> None:
    """Whole-episode minibatches whenever SB3's shuffled ones would cost many forwards and no buffer was named.

    The one place that decides (docs/guides/performance.md): with SB3's stock ``DictRolloutBuffer`` a minibatch
    of ``batch_size`` shuffled steps holds few steps of each episode, and each episode found costs one
    teacher-forced forward; :class:`EpisodeRolloutBuffer` yields minibatches of about ``batch_size`` tokens of
    whole episodes, one forward per episode. When the estimated ratio (:func:`sparse_minibatch_cost`) reaches
    :data:`SPARSE_MINIBATCH_COST`: a buffer left out of the algorithm's arguments becomes an EpisodeRolloutBuffer
    (SB3's ``PPO(LLMPolicy, env)`` at its defaults: 2048 steps, minibatches of 64, 10 epochs); a
    ``DictRolloutBuffer`` named by the user stays, with a warning that says what it costs.
    """
    buffer = getattr(algorithm, "rollout_buffer", None)
    batch_size = getattr(algorithm, "batch_size", None)  # PPO's and TRPO's minibatches; A2C takes the whole rollout
    if type(buffer) is not DictRolloutBuffer or not batch_size:
        return
    T = policy.T
    cost = sparse_minibatch_cost(buffer.buffer_size, buffer.n_envs, batch_size, T)
    if cost < SPARSE_MINIBATCH_COST:
        return
    if rollout_buffer_class is None and not getattr(algorithm, "rollout_buffer_kwargs", None):
        swap_in_episode_buffer(algorithm)
        return
    rows = buffer.buffer_size * buffer.n_envs
    per_episode = 1 + (min(batch_size, rows) - 1) * (T - 1) / max(rows - 1, 1)
    warnings.warn(
        f"{type(algorithm).__name__} draws minibatches of {batch_size} of {rows} stored steps from the "
        f"{type(buffer).__name__} you chose: about {per_episode:.1f} step(s) of an episode per minibatch, so "
        f"LLMPolicy runs up to {cost:.0f}x the model forwards of whole-episode minibatches (each episode found "
        f"costs one forward over its prompt and up to {T} tokens; the design card's PPO(LLMPolicy, env) "
        "took 360 s for learn(2048) this way). Leave rollout_buffer_class out, or pass "
        "rollout_buffer_class=EpisodeRolloutBuffer (minibatches of whole episodes), or use a batch_size closer "
        "to n_steps * n_envs.",
        # the line that built the algorithm: PPO.__init__ > PPO._setup_model > OnPolicyAlgorithm._setup_model >
        # LLMPolicy.__init__ > LLMPolicy.bind_algorithm > bind_algorithm > here
        stacklevel=8,
    )


def swap_in_episode_buffer(algorithm: Any) -> None:
    """Replace the algorithm's ``DictRolloutBuffer`` by an :class:`EpisodeRolloutBuffer` of the same size."""
    buffer = algorithm.rollout_buffer
    algorithm.rollout_buffer = EpisodeRolloutBuffer(
        buffer.buffer_size, buffer.observation_space, buffer.action_space, device=buffer.device,
        gae_lambda=buffer.gae_lambda, gamma=buffer.gamma, n_envs=buffer.n_envs,
    )
    algorithm.rollout_buffer_class = EpisodeRolloutBuffer  # what SB3 saves, so PPO.load builds the same


def ensure_kl_buffer(policy: Any, algorithm: Any) -> None:
    """The KL penalty is applied by EpisodeRolloutBuffer: swap SB3's default buffer for one, refuse others."""
    buffer = getattr(algorithm, "rollout_buffer", None)
    if buffer is None or isinstance(buffer, EpisodeRolloutBuffer):
        return
    if type(buffer) is DictRolloutBuffer and not getattr(algorithm, "rollout_buffer_kwargs", None):
        swap_in_episode_buffer(algorithm)
        warnings.warn(
            f"kl_coef={policy.kl_coef}, kl_target={policy.kl_target}: the KL penalty is applied by "
            f"EpisodeRolloutBuffer, so LLMPolicy replaced {type(algorithm).__name__}'s DictRolloutBuffer by one. "
            "Pass rollout_buffer_class=EpisodeRolloutBuffer to say so (and silence this warning).",
            stacklevel=8,  # the line that built the algorithm (the chain in choose_minibatches)
        )
        return
    raise TextEnvsError(
        f"kl_coef={policy.kl_coef}, kl_target={policy.kl_target} needs sb3_ext.EpisodeRolloutBuffer, which applies "
        f"the KL penalty to the rewards, got {type(buffer).__name__}, which would silently ignore it. Pass "
        "rollout_buffer_class=EpisodeRolloutBuffer, or kl_coef=0 and kl_target=None for no penalty."
    )
