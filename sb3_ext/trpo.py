"""sb3-contrib's TRPO with its actor gradients taken in one backward pass instead of one per parameter tensor.

``sb3_contrib.TRPO._compute_actor_grad`` calls ``torch.autograd.grad(kl, param, create_graph=True)`` once for each
parameter tensor, and keeps every one of those double-backward graphs alive for the conjugate-gradient steps. For
a small MLP that is a handful of tensors; for a language model it is one graph per weight matrix (74 for the
shipped T5), so memory and the cost of every Hessian-vector product grow with the number of tensors, not with the
model: 3.8 GB and 61 s for one update of 4 envs x 16 tokens on this project's 2.3M-parameter T5
(``benchmarks/bench_trpo.py``). The override below asks autograd for all of them at once: the same gradients
(``tests/test_algorithms.py`` compares the two), one graph.

With SB3's stock ``DictRolloutBuffer`` the minibatch observations also carry the actions taken at them (under
``sb3_ext.policy.TAKEN_ACTIONS_KEY``): TRPO evaluates its policy with ``get_distribution``, which has no action
argument, and a top-k/top-p policy must keep each taken token inside its support there as ``evaluate_actions``
does, or a token at the mask boundary gets probability 0 and its sample drops out of the update.
Everything else is the stock algorithm.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import torch as th
from sb3_contrib import TRPO as _StockTRPO
from stable_baselines3.common.buffers import DictRolloutBuffer
from stable_baselines3.common.type_aliases import DictRolloutBufferSamples
from torch import nn

from .policy import TAKEN_ACTIONS_KEY

__all__ = ["TRPO"]


class TRPO(_StockTRPO):
    """``sb3_contrib.TRPO`` (same arguments, same algorithm) for policies with many parameter tensors."""

    def _compute_actor_grad(
        self, kl_div: th.Tensor, policy_objective: th.Tensor
    ) -> tuple[list[nn.Parameter], th.Tensor, th.Tensor, list[tuple[int, ...]]]:
        """Flat gradients of the surrogate objective and of the KL (the latter with its graph, for the
        Hessian-vector products) with respect to the actor's parameters: those whose names lack "value" (as in
        sb3-contrib) and that the KL depends on."""
        params = [p for name, p in self.policy.named_parameters() if "value" not in name]
        kl_grads = th.autograd.grad(kl_div, params, create_graph=True, retain_graph=True, allow_unused=True)
        used = [(p, g) for p, g in zip(params, kl_grads, strict=True) if g is not None]
        actor_params = [p for p, _ in used]
        objective_grads = th.autograd.grad(policy_objective, actor_params, retain_graph=True)
        grad_kl = th.cat([g.reshape(-1) for _, g in used])
        policy_objective_gradients = th.cat([g.reshape(-1) for g in objective_grads])
        return actor_params, policy_objective_gradients, grad_kl, [g.shape for _, g in used]

    def train(self) -> None:
        """The stock update; with a ``DictRolloutBuffer``, each minibatch's observations carry their actions."""
        buffer = self.rollout_buffer
        if not isinstance(buffer, DictRolloutBuffer) or "get" in vars(buffer):
            super().train()
            return
        stock_get = buffer.get

        def get_with_actions(batch_size: int | None = None) -> Generator[Any, None, None]:
            for data in stock_get(batch_size):
                if isinstance(data, DictRolloutBufferSamples):
                    observations = dict(data.observations)
                    observations[TAKEN_ACTIONS_KEY] = data.actions.long().flatten()
                    data = data._replace(observations=observations)
                yield data

        buffer.get = get_with_actions  # type: ignore[method-assign]
        try:
            super().train()
        finally:
            del buffer.get
