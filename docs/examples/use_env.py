import json

import gymnasium as gym

import text_envs  # noqa: F401  (registers the envs; imports no torch/transformers/datasets)

env = gym.make("TextSummarization-v0")             # embedded data and tokenizer: works offline
obs, info = env.reset(seed=0)
obs, reward, terminated, truncated, info = env.step(env.action_space.sample())

# your own data: a local JSON lines, JSON or CSV file (two rows with XSum's columns, written on the spot)
rows = [{"document": "The council approved a new park on Monday after two years of debate.",
         "summary": "The council approved a new park."},
        {"document": "Heavy rain closed the coast road for six hours on Friday.",
         "summary": "Rain closed the coast road."}]
with open("my_rows.jsonl", "w") as f:
    f.writelines(json.dumps(row) + "\n" for row in rows)
env = gym.make("TextSummarization-v0", dataset="my_rows.jsonl")
env = gym.make("TextSummarization-v0", dataset="my_rows.jsonl", prompt_field="document", reference_field="summary")
print(env.unwrapped.num_examples, env.unwrapped.example_text(0))

# with a hub (or a local copy), any Hugging Face data set or tokenizer by name:
# env = gym.make("MachineTranslation-v0", dataset="wmt16", source_lang="en", target_lang="ro", tokenizer="t5-small")
