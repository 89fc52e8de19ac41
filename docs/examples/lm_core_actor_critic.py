import gymnasium as gym
import torch as th
from torch import nn

import text_envs  # noqa: F401  (registers the envs)
from lm_core import LMActorCritic, check_token_spaces, frozen_copy, load_model, tiny_t5_config
from lm_core.observations import observation_parts


class TinyActorCritic(LMActorCritic, nn.Module):
    """The smallest engine adapter: options, a model, and LMActorCritic does the rest."""

    def __init__(self, env: gym.Env):
        super().__init__()
        self.P, self.T, self.V = check_token_spaces(env.observation_space, env.action_space, "TinyActorCritic")
        self.temperature, self.top_k, self.top_p = 1.0, None, None
        self.value_mode, self.value_lr_scale = "detached", 1.0
        lm = load_model(tiny_t5_config(self.V))
        self.build_actor_critic(lm, reference_model=frozen_copy(lm))


env = gym.make("TextCopy-v0")
actor_critic = TinyActorCritic(env)
obs, _ = env.reset(seed=0)
with th.no_grad():
    while True:  # one cached decoder step per token, as an engine's env runner takes it
        batch = {key: value[None] for key, value in obs.items()}
        logits, hidden, _ = actor_critic.next_token_outputs(observation_parts(batch), cached=True)
        action = int(actor_critic.distribution_logits(logits).argmax(-1))  # greedy
        value = float(actor_critic.value(hidden))  # the value head (zero before training)
        obs, reward, terminated, truncated, info = env.step(action)
        if terminated or truncated:
            break
print(f"wrote {info['generated_text']!r} for {info['prompt_text']!r}: reward {reward}, last value {value}")
