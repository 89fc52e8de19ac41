"""SB3-style algorithms for ``LLMPolicy`` that update on complete texts and groups of texts per prompt.

``GRPO``, ``RLOO`` and ``REINFORCE`` (critic-free policy gradients), ``RAFT`` (expert iteration: supervised steps
on the best samples) and ``DPO`` (preference pairs ranked by the reward), each used like SB3's PPO::

    from sb3_ext import GRPO, LLMPolicy, make_text_vec_env
    env = make_text_vec_env("TextCopy-v0", n_envs=16, group_size=4, seed=0)
    model = GRPO(LLMPolicy, env, learning_rate=1e-3, policy_kwargs=dict(model=config)).learn(4096)

docs/guides/algorithms.md describes each; :mod:`sb3_ext.algorithms.base` the shared rollout of complete groups.
"""

from .base import Episode, GroupRolloutAlgorithm, episode_batch
from .dpo import DPO
from .grpo import GRPO
from .policy_gradient import PolicyGradientAlgorithm
from .raft import RAFT
from .reinforce import REINFORCE
from .rloo import RLOO

__all__ = ["GroupRolloutAlgorithm", "PolicyGradientAlgorithm", "Episode", "episode_batch", "GRPO", "RLOO",
           "REINFORCE", "RAFT", "DPO"]
