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
"""

from __future__ import annotations

from typing import Any

from ray.rllib.algorithms.appo.torch.appo_torch_learner import APPOTorchLearner
from ray.rllib.algorithms.impala.torch.impala_torch_learner import IMPALATorchLearner
from ray.rllib.algorithms.ppo.torch.ppo_torch_learner import PPOTorchLearner
from ray.rllib.connectors.learner import GeneralAdvantageEstimation
from ray.rllib.core.columns import Columns

from .connectors import TokenKLPenalty

__all__ = ["LMPPOTorchLearner", "LMIMPALATorchLearner", "LMAPPOTorchLearner"]


class _KLPenaltyMixin:
    """Insert the per-token KL penalty before the rewards are used (see the module docstring)."""

    def build(self) -> None:
        super().build()  # type: ignore[misc]
        kl_coef = float(self.config.learner_config_dict.get("kl_coef", 0.0))  # type: ignore[attr-defined]
        pipeline = self._learner_connector  # type: ignore[attr-defined]
        if kl_coef <= 0 or pipeline is None:
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


class LMIMPALATorchLearner(_KLPenaltyMixin, IMPALATorchLearner):
    """IMPALA's torch learner with the per-token KL penalty to the start model."""


class LMAPPOTorchLearner(_KLPenaltyMixin, APPOTorchLearner):
    """APPO's torch learner with the per-token KL penalty to the start model."""
