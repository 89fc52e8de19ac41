from stable_baselines3 import PPO
from stable_baselines3.common.env_util import make_vec_env

from sb3_ext import EpisodeRolloutBuffer, LLMPolicy, greedy_baseline
from text_envs.wrappers import BaselinePool, SelfCriticalReward

env = make_vec_env("text_envs:TextSummarization-v0", n_envs=32,    # "module:id": SubprocVecEnv workers import it too
                   env_kwargs=dict(difficulty=3), wrapper_class=SelfCriticalReward,
                   wrapper_kwargs=dict(pool=BaselinePool()))      # one batched baseline decoding for all 32 envs
model = PPO(
    LLMPolicy, env,
    rollout_buffer_class=EpisodeRolloutBuffer,    # whole-episode minibatches, each prompt stored once, -beta*KL to the
    n_steps=64, batch_size=2048, n_epochs=1,      # start model per token (kl_coef > 0 picks this buffer by itself)
    learning_rate=2e-4, gamma=1.0, gae_lambda=1.0,
    policy_kwargs=dict(kl_coef=0.02, value_mode="detached"),  # model=... a HF name/path/config; default: the shipped tiny T5
)
base = env.get_attr("unwrapped", [0])[0]          # the per-prompt baseline: the frozen start model's greedy text
env.set_attr("baseline_fn", greedy_baseline(model.policy.reference_model, base.eos_token_id, base.pad_token_id,
                                            base.max_new_tokens))
model.learn(32_768, progress_bar=True)
model.save("summarizer")                                   # offline: the zip holds the model config and weights
model = PPO.load("summarizer")
model.policy.save_pretrained("summarizer-hf")              # a normal Hugging Face checkpoint (model + tokenizer)
