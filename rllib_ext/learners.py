"""RLlib's PPO, IMPALA and APPO torch learners with the text envs' KL penalty wired in.

Each class is the stock learner plus :class:`_KLPenaltyMixin`, which puts :class:`rllib_ext.connectors.TokenKLPenalty`
into the learner connector pipeline where the rewards are still unread: right before PPO's
``GeneralAdvantageEstimation``, or at the end of IMPALA's/APPO's pipeline (V-trace reads the rewards in the loss).
The penalty's coefficient is ``config.learner_config_dict["kl_coef"]`` (:func:`rllib_ext.algorithm_config` sets it).

PPO's loss also builds the *sampling* policy's distribution from ``batch["action_dist_inputs"]``, but reads it only
for its own KL-loss term (``use_kl_loss``), which :func:`rllib_ext.algorithm_config` turns off (the KL here is the
per-token penalty to the start model). :class:`LMPPOTorchLearner` therefore lets the runners store the taken token's
log-prob only (4 bytes per step instead of ``V`` floats: 128 KB per step at V = 32,000) and hands the loss the
current distribution, detached, in that slot; it refuses ``use_kl_loss=True``, which would need the real one.

Every learner also puts :class:`rllib_ext.episodes.ExpandTextObservations` first in its pipeline: the env runners
ship each episode's prompt once (:mod:`rllib_ext.episodes`) and the learner rebuilds the full observations before
any other piece reads them.

IMPALA's and APPO's learners update in a thread of their own; the caller's ``update`` waits for it on an event
(``_agg_event.wait()``) and may wait on a full queue, both without a timeout in RLlib: a learner thread that died
(an exception in the update) or stopped answering hung the run forever. :class:`_WatchedLearnerThreadMixin` makes
both waits fail instead: at once, with the thread's exception, when the thread is dead, and with
:class:`LearnerStalledError` after ``config.learner_config_dict["learner_timeout_s"]`` seconds without an answer
(:data:`DEFAULT_LEARNER_TIMEOUT_S`; :func:`rllib_ext.algorithm_config`'s ``learner_timeout_s``).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from ray.rllib.algorithms.appo.torch.appo_torch_learner import APPOTorchLearner
from ray.rllib.algorithms.impala.torch.impala_torch_learner import IMPALATorchLearner
from ray.rllib.algorithms.ppo.torch.ppo_torch_learner import PPOTorchLearner
from ray.rllib.connectors.learner import GeneralAdvantageEstimation
from ray.rllib.core.columns import Columns

from .connectors import TokenKLPenalty
from .episodes import ExpandTextObservations

__all__ = ["LMPPOTorchLearner", "LMIMPALATorchLearner", "LMAPPOTorchLearner", "LearnerStalledError",
           "DEFAULT_LEARNER_TIMEOUT_S", "wait_for_learner"]

#: seconds an IMPALA/APPO ``update`` waits for its learner thread before failing (an update of the shipped model
#: takes seconds on a CPU; a 0.5B model's a minute at most on one GPU)
DEFAULT_LEARNER_TIMEOUT_S = 600.0
#: how often a wait checks that the learner thread is still alive (seconds)
_POLL_S = 0.5


class LearnerStalledError(TimeoutError):
    """The learner thread died or did not answer within ``learner_timeout_s``."""


def wait_for_learner(attempt: Callable[[float], bool], thread: threading.Thread | None, timeout_s: float,
                     waiting_for: str, error: BaseException | None = None,
                     thread_error: Callable[[], BaseException | None] | None = None) -> None:
    """Call ``attempt(seconds)`` (a wait of at most ``seconds`` that returns whether it succeeded) until it succeeds;
    raise :class:`LearnerStalledError` when ``thread`` has died or ``timeout_s`` have passed.

    :param attempt: one bounded wait, e.g. ``event.wait``
    :param thread: the learner thread whose answer is awaited (``None``: no liveness check)
    :param timeout_s: seconds to wait in all
    :param waiting_for: what is awaited, for the message
    :param thread_error: returns the exception the thread's update raised, if any (the error's cause)
    """
    deadline = time.monotonic() + timeout_s
    while not attempt(max(0.0, min(_POLL_S, deadline - time.monotonic()))):
        if thread is not None and not thread.is_alive():
            cause = thread_error() if thread_error is not None else None
            raise LearnerStalledError(
                f"the learner thread stopped while the trainer waited for {waiting_for}"
                + (f": its update raised {type(cause).__name__}: {cause}" if cause is not None else
                   " (its traceback is printed above)")) from cause
        if time.monotonic() >= deadline:
            raise LearnerStalledError(
                f"no answer from the learner thread for {timeout_s:g} s while waiting for {waiting_for}: the update "
                "is stuck or far slower than expected. If updates of this model legitimately take longer, raise "
                "learner_timeout_s (rllib_ext.algorithm_config) or config.learner_config_dict['learner_timeout_s']")


class _WatchedEvent(threading.Event):
    """``threading.Event`` whose untimed ``wait`` fails when the learner thread dies or the timeout passes."""

    def __init__(self, learner: Any, timeout_s: float) -> None:
        super().__init__()
        self.learner, self.timeout_s = learner, timeout_s

    def wait(self, timeout: float | None = None) -> bool:
        if timeout is not None:
            return super().wait(timeout)
        wait_for_learner(super().wait, getattr(self.learner, "_learner_thread", None), self.timeout_s,
                         "the results of its updates", thread_error=self.learner.learner_thread_error)
        return True


class _WatchedQueue(queue.Queue):
    """The learner thread's in-queue: a blocking ``put`` on a full queue fails like :class:`_WatchedEvent`."""

    def __init__(self, maxsize: int, learner: Any, timeout_s: float) -> None:
        super().__init__(maxsize=maxsize)
        self.learner, self.timeout_s = learner, timeout_s

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        if not block or timeout is not None:
            return super().put(item, block, timeout)

        def attempt(seconds: float) -> bool:
            try:
                super(_WatchedQueue, self).put(item, True, max(seconds, 1e-3))
                return True
            except queue.Full:
                return False

        wait_for_learner(attempt, getattr(self.learner, "_learner_thread", None), self.timeout_s,
                         "room in its batch queue", thread_error=self.learner.learner_thread_error)


class _WatchedLearnerThreadMixin:
    """IMPALA/APPO learners whose waits on their learner thread time out (see the module docstring)."""

    _learner_thread_error: BaseException | None = None

    def build(self) -> None:
        timeout_s = float(self.config.learner_config_dict.get(  # type: ignore[attr-defined]
            "learner_timeout_s", DEFAULT_LEARNER_TIMEOUT_S))
        if not timeout_s > 0:
            raise ValueError(f"expected learner_timeout_s > 0, got {timeout_s}")
        # RLlib's build keeps an in-queue that already exists
        self._learner_thread_in_queue = _WatchedQueue(self.config.learner_queue_size, self,  # type: ignore
                                                      timeout_s)
        super().build()  # type: ignore[misc]
        self._agg_event = _WatchedEvent(self, timeout_s)  # read by the thread at each use; it waits on its queue now
        thread = self._learner_thread  # type: ignore[has-type]
        update = thread._update_method

        def recording_update(**kwargs: Any) -> Any:  # keep the update's exception for the waiting caller
            try:
                return update(**kwargs)
            except BaseException as error:
                self._learner_thread_error = error
                raise

        thread._update_method = recording_update

    def learner_thread_error(self) -> BaseException | None:
        """The exception that stopped the learner thread's update, if one did."""
        return self._learner_thread_error


class _KLPenaltyMixin:
    """Rebuild the compacted observations first, and insert the per-token KL penalty before the rewards are used
    (see the module docstring)."""

    def build(self) -> None:
        super().build()  # type: ignore[misc]
        kl_coef = float(self.config.learner_config_dict.get("kl_coef", 0.0))  # type: ignore[attr-defined]
        pipeline = self._learner_connector  # type: ignore[attr-defined]
        if pipeline is None:
            return
        pipeline.prepend(ExpandTextObservations())  # before PPO's AddOneTsToEpisodesAndTruncate reads them
        if kl_coef <= 0:
            return
        if getattr(self.config, "num_aggregator_actors_per_learner", 0):  # type: ignore[attr-defined]
            raise ValueError(
                f"kl_coef={kl_coef} is applied by the learner's own connector pipeline, which aggregator actors "
                "bypass: set num_aggregator_actors_per_learner=0 (rllib_ext.algorithm_config's default)")
        piece = TokenKLPenalty(kl_coef=kl_coef)
        if any(type(c) is GeneralAdvantageEstimation for c in pipeline.connectors):
            pipeline.insert_before(GeneralAdvantageEstimation, piece)
        else:
            pipeline.append(piece)


class LMPPOTorchLearner(_KLPenaltyMixin, PPOTorchLearner):
    """PPO's torch learner for :class:`rllib_ext.module.LMRLModule` (see the module docstring)."""

    def compute_loss_for_module(self, *, module_id: Any, config: Any, batch: dict[str, Any],
                                fwd_out: dict[str, Any]) -> Any:
        if Columns.ACTION_DIST_INPUTS not in batch:
            if config.use_kl_loss:
                raise ValueError(
                    "PPO's use_kl_loss needs the sampling policy's full distribution per step, which LMRLModule does "
                    "not store (V floats per token); set use_kl_loss=False (rllib_ext.algorithm_config does): the "
                    "KL to the start model is the per-token reward penalty kl_coef")
            # read by PPO only for its KL-loss term, which is off: the current distribution fills the slot
            batch = {**batch, Columns.ACTION_DIST_INPUTS: fwd_out[Columns.ACTION_DIST_INPUTS].detach()}
        return super().compute_loss_for_module(module_id=module_id, config=config, batch=batch, fwd_out=fwd_out)


class LMIMPALATorchLearner(_KLPenaltyMixin, _WatchedLearnerThreadMixin, IMPALATorchLearner):
    """IMPALA's torch learner with the per-token KL penalty to the start model and timed waits."""


class LMAPPOTorchLearner(_KLPenaltyMixin, _WatchedLearnerThreadMixin, APPOTorchLearner):
    """APPO's torch learner with the per-token KL penalty to the start model and timed waits."""
