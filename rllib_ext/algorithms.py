"""RLlib's IMPALA and APPO algorithms, less the driver's busy wait.

IMPALA/APPO's ``training_step`` takes whatever samples and learner results are ready and returns; ``Algorithm.train``
calls it in a loop until the iteration's minimum time has passed. When nothing is ready it returns in ~0.2 ms, so the
driver spins: measured on TextCopy-v0 with 2 env runners on 2 cores, 80,000 calls and 10 s of CPU in 15 s, a core
taken from the env runners (IMPALA sampled 444 tokens/s against PPO's 745 in the same conditions). Here a step that
found nothing to do waits ``IDLE_WAIT_S`` before the next poll; a step that did work (an update, a batch) goes on at
once.

The driver also watches the learners: with remote learners (``num_learners >= 1``) the updates are asynchronous and
RLlib keeps sampling and polling when no update comes back. When the env runners have delivered two train batches
since the last trained step and ``config.learner_config_dict["learner_timeout_s"]`` seconds have passed without
one, the step raises :class:`rllib_ext.learners.LearnerStalledError` (a local learner's own waits time out in
:mod:`rllib_ext.learners`).
"""

from __future__ import annotations

import time
from typing import Any

from ray.rllib.algorithms.appo import APPO
from ray.rllib.algorithms.impala import IMPALA
from ray.rllib.core import ALL_MODULES
from ray.rllib.utils.metrics import (
    ENV_RUNNER_RESULTS,
    LEARNER_RESULTS,
    NUM_ENV_STEPS_SAMPLED_LIFETIME,
    NUM_ENV_STEPS_TRAINED_LIFETIME,
)

from .learners import DEFAULT_LEARNER_TIMEOUT_S, LearnerStalledError

__all__ = ["LMIMPALA", "LMAPPO", "IDLE_WAIT_S"]

#: how long the driver waits after a training step that found nothing ready (seconds)
IDLE_WAIT_S = 0.002


class _IdleWaitMixin:
    _progress: tuple[float, float, float] | None = None  # (trained steps, sampled steps, time) at the last update

    def training_step(self) -> Any:
        start = time.perf_counter()
        result = super().training_step()  # type: ignore[misc]
        if time.perf_counter() - start < IDLE_WAIT_S:  # nothing was ready: wait instead of polling again at once
            time.sleep(IDLE_WAIT_S)
        self._watch_learners()
        return result

    def _watch_learners(self) -> None:
        """Raise :class:`LearnerStalledError` when samples keep coming and no update has for the timeout."""
        metrics, config = self.metrics, self.config  # type: ignore[attr-defined]
        trained = float(metrics.peek((LEARNER_RESULTS, ALL_MODULES, NUM_ENV_STEPS_TRAINED_LIFETIME), default=0))
        sampled = float(metrics.peek((ENV_RUNNER_RESULTS, NUM_ENV_STEPS_SAMPLED_LIFETIME), default=0))
        now = time.monotonic()
        if self._progress is None or trained > self._progress[0]:
            self._progress = (trained, sampled, now)
            return
        timeout_s = float(config.learner_config_dict.get("learner_timeout_s", DEFAULT_LEARNER_TIMEOUT_S))
        waiting_s = now - self._progress[2]
        if waiting_s > timeout_s and sampled - self._progress[1] >= 2 * config.total_train_batch_size:
            raise LearnerStalledError(
                f"the learners trained nothing for {waiting_s:.0f} s while the env runners sampled "
                f"{sampled - self._progress[1]:.0f} env steps: a learner is stuck or dead (see its actor's log). If "
                "updates of this model legitimately take longer, raise learner_timeout_s "
                "(rllib_ext.algorithm_config)")


class LMIMPALA(_IdleWaitMixin, IMPALA):
    """IMPALA whose driver waits ``IDLE_WAIT_S`` after an idle training step instead of spinning."""


class LMAPPO(_IdleWaitMixin, APPO):
    """APPO whose driver waits ``IDLE_WAIT_S`` after an idle training step instead of spinning."""
