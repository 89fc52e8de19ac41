"""The field's reference benchmark as a ``text-envs bench`` preset: RL4LMs' GRUE IMDB text continuation.

``text-envs bench --preset grue-imdb --device cuda`` continues IMDB reviews with ``lvwerra/gpt2-imdb`` (prompts of
at most 64 tokens, 48 generated tokens) and rewards P(positive) of ``lvwerra/distilbert-imdb``; it needs the hub
(the models and the ``imdb`` data set) and, for its budget, a GPU. ``--model``, ``--reward-model`` and
``--dataset`` replace the three names (a local folder saved with ``save_pretrained`` and a local IMDB-format
``.jsonl``/``.csv`` file work offline; ``tests/test_grue_preset.py`` runs the whole preset that way on tiny stand-ins).

:data:`PUBLISHED` holds the targets the runs compare with (RL4LMs, Ramamurthy et al. 2023, Table 3 "IMDB", and an
independent rerun of its PPO). docs/guides/grue_imdb.md says what is and is not the same as RL4LMs' setup; this
preset has not been run in this project (no hub, no GPU where it was written).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from text_envs.errors import TextEnvsError
from text_envs_app.bench_task import BenchTask

POLICY_MODEL = "lvwerra/gpt2-imdb"
"""GPT-2 fine-tuned on IMDB reviews (the policy and the start model of every run)."""
REWARD_MODEL = "lvwerra/distilbert-imdb"
"""DistilBERT fine-tuned as an IMDB sentiment classifier; its label 1 is POSITIVE."""
DATASET = "imdb"
"""TextContinuation-v0's hub name for ``stanfordnlp/imdb`` (rows ``{"text", "label"}``; splits train/test)."""
POSITIVE_LABEL = 1
MAX_PROMPT_TOKENS = 64
MAX_NEW_TOKENS = 48
PROMPT_WORDS = 64  # the review's opening; the 64-token prompt limit then cuts it (truncation keeps the head)

PUBLISHED: dict[str, dict[str, float]] = {
    "zero-shot (RL4LMs)": {"sentiment": 0.489, "perplexity": 32.2},
    "PPO (RL4LMs)": {"sentiment": 0.605, "perplexity": 33.5},
    "NLPO (RL4LMs)": {"sentiment": 0.637, "perplexity": 32.7},
    "PPO (independent rerun)": {"sentiment": 0.604, "perplexity": 33.0},
}
"""The targets: sentiment = mean P(positive) of the reward model, perplexity = RL4LMs' fluency column."""

OVERRIDABLE = ("model", "reward_model", "dataset", "steps", "n_envs", "n_steps", "eval_examples")
"""The keys :func:`override_preset` accepts (the first three are also ``text-envs bench`` flags)."""


def learned_reward_spec(reward_model: str) -> dict[str, Any]:
    """The env's reward: P(label 1) of the sequence classifier ``reward_model`` on the generated continuation."""
    return {"name": "learned", "model": reward_model, "label": POSITIVE_LABEL, "output": "prob"}


def grue_imdb_task(reward_model: str = REWARD_MODEL) -> Any:
    """``TextContinuation-v0`` on IMDB reviews (the data set comes from the preset's ``dataset``), sampled decoding
    (RL4LMs samples its evaluation texts), the reward model's P(positive) as the reward: a
    :class:`text_envs_app.bench_task.BenchTask`."""
    return BenchTask(
        "TextContinuation-v0", "imdb/sentiment",
        env_kwargs={"reward": learned_reward_spec(reward_model), "prompt_template": "{text}",
                    "prompt_words": PROMPT_WORDS, "max_prompt_tokens": MAX_PROMPT_TOKENS,
                    "max_new_tokens": MAX_NEW_TOKENS, "truncation_side": "right"},
        metrics=(), decoding="sampled",
    )


def grue_presets() -> dict[str, dict[str, Any]]:
    """``{"grue-imdb": preset}``, registered in :data:`text_envs_app.bench.BENCH_PRESETS` (keys as its presets',
    plus ``model`` and ``dataset``)."""
    grue_imdb = dict(
        envs=(grue_imdb_task(),), model=POLICY_MODEL, dataset=DATASET,
        # RL4LMs' PPO rollouts: 128 tokens per env; 64 rollouts of 16 envs (131,072 generated tokens per run)
        steps=131_072, n_envs=16, n_steps=128, eval_examples=500, seeds=5, kl_coefs=(0.1,),
        curve_points=0,  # the curve reads validation prompts, which the hub's imdb does not have
        methods=("sampled", "ppo", "nlpo"),
    )
    return {"grue-imdb": grue_imdb}


def override_preset(preset: Mapping[str, Any], overrides: Mapping[str, Any] | None) -> dict[str, Any]:
    """A copy of ``preset`` with the non-None ``overrides`` applied (keys from :data:`OVERRIDABLE`).

    ``reward_model`` replaces the model of every task whose reward is a learned classifier; a preset without one
    refuses it, as it refuses ``model``/``dataset`` when it trains the shipped model on embedded data (those presets
    compare with this project's own numbers, which another model or data set would not reproduce).
    """
    out = dict(preset)
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    unknown = sorted(set(given) - set(OVERRIDABLE))
    if unknown:
        raise TextEnvsError(f"unknown preset override(s) {unknown}: expected some of {list(OVERRIDABLE)}")
    for key in ("model", "dataset"):
        if key in given and key not in preset:
            raise TextEnvsError(f"--{key} replaces a preset's own {key}; this preset has none (it uses the shipped "
                                f"model and embedded data): use the grue-imdb preset or `text-envs train --{key}`")
    for key in ("steps", "n_envs", "n_steps", "eval_examples"):
        if key in given:
            value = given[key]
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise TextEnvsError(f"expected a positive integer for the preset's {key}, got {value!r}")
            out[key] = value
    for key in ("model", "dataset"):
        if key in given:
            out[key] = str(given[key])
    if "reward_model" in given:
        tasks, replaced = [], False
        for task in preset["envs"]:
            reward = task.env_kwargs.get("reward") if isinstance(task, BenchTask) else None
            if isinstance(reward, Mapping) and reward.get("name") == "learned":
                kwargs = dict(task.env_kwargs, reward={**reward, "model": str(given["reward_model"])})
                task = BenchTask(task.env, task.name, task.reward, kwargs, task.metrics, task.decoding)
                replaced = True
            tasks.append(task)
        if not replaced:
            raise TextEnvsError("--reward-model replaces a learned reward's classifier; this preset's tasks have none")
        out["envs"] = tuple(tasks)
    return out


def targets_markdown() -> str:
    """The published targets as a Markdown table (docs and the bench log)."""
    lines = ["| run | sentiment (P positive) | perplexity |", "|---|---|---|"]
    lines += [f"| {name} | {v['sentiment']:.3f} | {v['perplexity']:.1f} |" for name, v in PUBLISHED.items()]
    return "\n".join(lines)
