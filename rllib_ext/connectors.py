"""The KL penalty to the frozen start model, as a learner connector piece (before GAE / V-trace see the rewards).

Each token's reward becomes ``r_t - kl_coef * (log pi(a_t) - log ref(a_t))`` (the k1 estimate of
``KL(pi || ref)`` at the sampled token), the same per-token penalty as SB3's ``EpisodeRolloutBuffer``:

* ``log pi(a_t)`` is the sampling policy's log-prob that the env runner stored with the action
  (``action_logp``), so nothing more is computed or shipped by the runners;
* ``log ref(a_t)`` is computed here, on the learner, by the module's frozen start model: one teacher-forced
  forward per episode found in the batch (:meth:`rllib_ext.module.LMRLModule.reference_log_probs`), not one
  cached decode step per token on every runner.

The piece runs on the batched, tensor-converted train batch: :class:`rllib_ext.learners` inserts it right before
PPO's ``GeneralAdvantageEstimation`` (which reads the rewards), and at the end of IMPALA's/APPO's pipeline
(V-trace reads the rewards in the loss). Rows that only bootstrap the value function (``loss_mask`` False) keep
their reward (0).
"""

from __future__ import annotations

from typing import Any

import torch as th
from ray.rllib.connectors.connector_v2 import ConnectorV2
from ray.rllib.core.columns import Columns

from lm_core.kl import kl_estimate

__all__ = ["TokenKLPenalty", "KL_METRIC"]

#: the learner metric (per module) holding the batch's mean per-token KL estimate to the start model
KL_METRIC = "mean_token_kl_to_start_model"


class TokenKLPenalty(ConnectorV2):
    """Subtract ``kl_coef * (log pi(a_t) - log ref(a_t))`` from every reward of the train batch.

    :param kl_coef: beta, >= 0 (0: the piece does nothing)
    """

    def __init__(self, input_observation_space: Any = None, input_action_space: Any = None, *, kl_coef: float,
                 **kwargs: Any) -> None:
        super().__init__(input_observation_space, input_action_space, **kwargs)
        if not kl_coef >= 0:
            raise ValueError(f"expected kl_coef >= 0, got {kl_coef}")
        self.kl_coef = float(kl_coef)

    def __call__(self, *, rl_module: Any, batch: dict[str, Any], episodes: Any, explore: Any = None,
                 shared_data: Any = None, metrics: Any = None, **kwargs: Any) -> Any:
        if self.kl_coef == 0:
            return batch
        for module_id, data in batch.items():
            module = rl_module[module_id]
            if not hasattr(module, "reference_log_probs") or Columns.ACTION_LOGP not in data:
                continue
            ref = module.reference_log_probs(data)  # (N,) on the module's device
            logp = th.as_tensor(data[Columns.ACTION_LOGP]).to(ref.device).float()
            kl = kl_estimate(logp, ref, "k1")  # (N,) log pi(a) - log ref(a) per token
            if Columns.LOSS_MASK in data:
                kl = kl * th.as_tensor(data[Columns.LOSS_MASK]).to(kl.device).float()
            rewards = data[Columns.REWARDS]
            if isinstance(rewards, th.Tensor):
                data[Columns.REWARDS] = rewards - (self.kl_coef * kl).to(rewards.device, rewards.dtype)
            else:  # a NumPy batch (a pipeline without NumpyToTensor)
                data[Columns.REWARDS] = rewards - (self.kl_coef * kl).cpu().numpy().astype(rewards.dtype)
            if metrics is not None:
                n = th.as_tensor(data[Columns.LOSS_MASK]).float().sum() if Columns.LOSS_MASK in data else kl.numel()
                metrics.log_value((module_id, KL_METRIC), float(kl.sum() / max(float(n), 1.0)), window=1)
        return batch
