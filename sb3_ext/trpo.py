"""sb3-contrib's TRPO with its actor gradients taken in one backward pass instead of one per parameter tensor.

``sb3_contrib.TRPO._compute_actor_grad`` calls ``torch.autograd.grad(kl, param, create_graph=True)`` once for each
parameter tensor, and keeps every one of those double-backward graphs alive for the conjugate-gradient steps. For
a small MLP that is a handful of tensors; for a language model it is one graph per weight matrix (74 for the
shipped T5), so memory and the cost of every Hessian-vector product grow with the number of tensors, not with the
model: 3.8 GB and 61 s for one update of 4 envs x 16 tokens on this project's 2.3M-parameter T5
(``benchmarks/bench_trpo.py``). The override below asks autograd for all of them at once: the same gradients
(``tests/test_algorithms.py`` compares the two), one graph. Everything else is the stock algorithm.
"""

from __future__ import annotations

import torch as th
from sb3_contrib import TRPO as _StockTRPO
from torch import nn

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
