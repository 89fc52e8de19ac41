import os

import ray

import rllib_ext

ray.init()  # joins the cluster of RAY_ADDRESS (or one started on this node with `ray start`), else starts Ray here
config = rllib_ext.algorithm_config("TextCopy-v0", "ppo", num_env_runners=2, num_envs_per_env_runner=8,
                                    train_batch_size=256, learning_rate=1e-3, seed=0)
config = config.training(num_epochs=2)  # any RLlib setting goes on top
algo = config.build_algo()
for _ in range(4):
    result = algo.train()  # one iteration: 256 tokens sampled by the two env runners, then one update
    print(f"{result['num_env_steps_sampled_lifetime']:.0f} tokens: mean return "
          f"{result['env_runners']['episode_return_mean']:.3f}")
checkpoint = algo.save_to_path(os.path.abspath("copy_ckpt"))  # Algorithm.from_checkpoint(checkpoint) continues it
rllib_ext.save_pretrained(algo, "copy_lm")  # Hugging Face format: AutoModelForSeq2SeqLM.from_pretrained("copy_lm")
algo.stop()
ray.shutdown()
