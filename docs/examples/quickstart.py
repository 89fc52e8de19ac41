import gymnasium as gym
from stable_baselines3 import PPO

import text_envs  # noqa: F401  (registers the envs; imports no torch)
from sb3_ext import EpisodeRolloutBuffer, LLMPolicy

env = gym.make("TextContinuation-v0")  # continue a review; the reward is the continuation's positive sentiment
model = PPO(LLMPolicy, env, n_steps=128, batch_size=128, n_epochs=1, learning_rate=2e-4, seed=0,
            rollout_buffer_class=EpisodeRolloutBuffer,  # whole episodes; the KL penalty to the start model
            policy_kwargs=dict(kl_coef=0.5))             # the default model: the shipped tiny T5, offline
model.learn(256)

obs, info = env.reset(seed=0)
done = False
while not done:  # one action is one token; deterministic=True is greedy decoding
    action, _ = model.predict(obs, deterministic=True)
    obs, reward, terminated, truncated, info = env.step(action)
    done = terminated or truncated
print(info["prompt_text"], "->", info["generated_text"], f"(reward {reward:.3f})")
