"""The differently worded openings as an env: the same task, prompts unlike the training generator's."""

import gymnasium as gym

import text_envs  # noqa: F401  (registers the envs)

env = gym.make("TextContinuation-v0", split="ood")  # 400 rows; difficulty 2-3 add a neutral second sentence
print(env.unwrapped.num_examples, env.unwrapped.example_text(0))
