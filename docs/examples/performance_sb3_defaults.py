import gymnasium as gym
from stable_baselines3 import PPO

import text_envs  # noqa: F401  (registers the envs)
from sb3_ext import LLMPolicy

env = gym.make("TextSummarization-v0")
model = PPO(LLMPolicy, env)   # SB3's defaults: n_steps 2048, batch_size 64, n_epochs 10
model.learn(2048)
