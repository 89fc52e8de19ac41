"""Token sampling from a policy's per-row distribution (the rollout's one draw per env per step)."""

from __future__ import annotations

import torch as th

__all__ = ["sample_tokens"]


def sample_tokens(probs: th.Tensor) -> th.Tensor:
    """Draw one token per row by inverse CDF: ``probs`` (B, V) -> (B,).

    ``torch.multinomial`` (what ``Categorical.sample`` calls) draws a random number per vocabulary entry on the
    CPU; one uniform per row and a ``searchsorted`` draw from the same distribution about 10x faster here
    (12% of a PPO run's time, benchmarks/RESULTS.md). ``right=True`` picks index j when cdf[j-1] <= u < cdf[j],
    so a zero-probability (masked) token is never drawn.
    """
    cdf = probs.cumsum(-1)  # (B, V)
    u = th.rand((*cdf.shape[:-1], 1), device=cdf.device, dtype=cdf.dtype) * cdf[..., -1:]  # (B, 1) in [0, total)
    return th.searchsorted(cdf, u, right=True).squeeze(-1).clamp_(max=cdf.shape[-1] - 1)  # (B,)
