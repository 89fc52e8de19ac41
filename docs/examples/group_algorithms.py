import gymnasium as gym
from stable_baselines3.common.evaluation import evaluate_policy

import text_envs  # noqa: F401  (registers the ids)
from sb3_ext import DPO, GRPO, RAFT, REINFORCE, RLOO, LLMPolicy, make_text_vec_env

venv = gym.make_vec("TextCopy-v0", num_envs=8, group_size=4)   # 2 prompts x 4 texts, in lockstep
venv.reset(seed=0)
print("examples:", venv.unwrapped.example_indices)             # [a a a a b b b b]

env = make_text_vec_env("TextCopy-v0", n_envs=16, group_size=4, seed=0)   # the same, as an SB3 VecEnv
model = GRPO(LLMPolicy, env, learning_rate=3e-3, seed=0,      # TRL's names and defaults; lr for a tiny T5
             scale_rewards="group", loss_type="dapo", beta=0.0)
evaluation = make_text_vec_env("TextCopy-v0", n_envs=8, seed=1)
before, _ = evaluate_policy(model, evaluation, n_eval_episodes=32, deterministic=False)
model.learn(2048)
after, _ = evaluate_policy(model, evaluation, n_eval_episodes=32, deterministic=False)
print(f"GRPO: sampled reward {before:.2f} -> {after:.2f}")
model.save("grpo_copy")
model = GRPO.load("grpo_copy", env=env)

# the others take the same env (REINFORCE also group_size=1) and the same calls
others = [RLOO(LLMPolicy, env, beta=0.05), REINFORCE(LLMPolicy, env, baseline="batch"),
          RAFT(LLMPolicy, env, keep_top=1), DPO(LLMPolicy, env, beta=0.1, online=True)]
