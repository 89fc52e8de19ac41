"""Learned reward: score generated text with any Hugging Face sequence-classification model.

``make_reward("learned", model="path/or/name", label="POSITIVE", output="prob")``: the reward is the chosen
label's logit, probability or log-probability (``num_labels == 1`` regression heads: the raw score, or its
sigmoid with ``output="prob"``). With ``include_prompt=True`` the classifier reads ``(prompt, prediction)`` as a
text pair. Scoring is batched, under ``torch.inference_mode``, on the device you pass (use the policy's);
models loaded by name/path are cached once per process and device.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from text_envs.rewards._models import cached, resolve_device
from text_envs.rewards.base import Reward, RewardError

__all__ = ["LearnedReward"]


def _load(path: str, device: Any) -> tuple[Any, Any]:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(path)
        model = AutoModelForSequenceClassification.from_pretrained(path)
    except OSError as exc:
        raise RewardError(
            f"Could not load the reward model {path!r}: {exc}. Expected a local directory saved with "
            "save_pretrained (config, weights, tokenizer) or a hub name (needs network)."
        ) from exc
    return model.to(device).eval(), tok


class LearnedReward(Reward):
    """A Hugging Face ``AutoModelForSequenceClassification`` as a reward.

    :param model: a name/path (loaded with ``from_pretrained`` and cached), or a model object.
    :param tokenizer: the tokenizer (required with a model object; loaded from the path otherwise).
    :param label: the class to reward: an index or a label name from ``config.id2label``. Default: 0 for a
        single-output (regression) head, 1 for a binary classifier; required for more classes.
    :param output: ``"logit"``, ``"prob"`` (softmax, sigmoid for one output) or ``"logprob"``.
    :param include_prompt: feed ``(prompt, prediction)`` as a text pair (the prompts must then be passed).
    :param device: ``"cpu"``, ``"cuda"``...; ``None`` = CUDA when available. Use the policy's device.
    :param batch_size: texts per forward pass.
    :param max_length: truncate inputs to this many tokens.
    :param name: the reward's name (``"learned"``).
    """

    batched_only = True

    def __init__(
        self,
        model: str | Path | Any,
        tokenizer: Any | None = None,
        label: int | str | None = None,
        output: str = "logit",
        include_prompt: bool = False,
        device: Any = None,
        batch_size: int = 32,
        max_length: int = 512,
        name: str = "learned",
    ) -> None:
        if output not in ("logit", "prob", "logprob"):
            raise RewardError(f"Expected output 'logit', 'prob' or 'logprob', got {output!r}.")
        if batch_size < 1 or max_length < 1:
            raise RewardError(f"Expected batch_size >= 1 and max_length >= 1, got {batch_size}, {max_length}.")
        self.name = name
        self.device = resolve_device(device)
        self.output, self.include_prompt, self.needs_prompts = output, include_prompt, include_prompt
        self.batch_size, self.max_length = batch_size, max_length
        if isinstance(model, (str, Path)):
            path = str(model)
            self.model_name = path
            self.model, self.tokenizer = cached("classifier", path, self.device, lambda: _load(path, self.device))
            if tokenizer is not None:
                self.tokenizer = tokenizer
        else:
            if not hasattr(model, "config") or not callable(model):
                raise RewardError(
                    f"Expected a model name/path or a transformers sequence-classification model, got "
                    f"{type(model).__name__}."
                )
            if tokenizer is None:
                raise RewardError("Expected `tokenizer=` with a model object (the tokenizer that goes with it).")
            self.model_name = type(model).__name__
            self.model, self.tokenizer = model.to(self.device).eval(), tokenizer
        cfg = self.model.config
        self.num_labels = int(cfg.num_labels)
        self.label_index = self._resolve_label(label, cfg)
        if self.tokenizer.pad_token_id is None:  # GPT-2 style tokenizers: pad with EOS for batching
            if self.tokenizer.eos_token is None:
                raise RewardError("The reward tokenizer has neither a pad nor an EOS token; set tokenizer.pad_token.")
            self.tokenizer.pad_token = self.tokenizer.eos_token
        if getattr(cfg, "pad_token_id", None) is None:
            cfg.pad_token_id = self.tokenizer.pad_token_id  # decoder classifiers find the last real token by it

    def _resolve_label(self, label: int | str | None, cfg: Any) -> int:
        n = self.num_labels
        if label is None:
            if n <= 2:
                return 0 if n == 1 else 1
            raise RewardError(
                f"The reward model has {n} labels {dict(cfg.id2label)}; pass label=<index or name> to choose one."
            )
        if isinstance(label, str):
            names = {str(v): int(k) for k, v in cfg.id2label.items()}
            if label not in names:
                from text_envs.errors import unknown_name

                raise unknown_name("label", label, names)
            return names[label]
        if not isinstance(label, int) or not 0 <= label < n:
            raise RewardError(f"Expected a label index in [0, {n}), got {label!r}.")
        return label

    def to(self, device: Any) -> LearnedReward:
        """Move the model to ``device`` (e.g. the policy's) and return ``self``."""
        self.device = resolve_device(device)
        self.model.to(self.device)
        return self

    @property
    def signature(self) -> str:
        return f"{self.name}|model:{self.model_name}|label:{self.label_index}|out:{self.output}|prompt:{self.include_prompt}"

    def _compute(self, predictions, references, prompts):
        import torch

        if self.include_prompt and prompts is None:
            raise RewardError(f"Reward {self.name!r} was built with include_prompt=True; pass prompts=[...].")
        out: list[float] = []
        k = self.label_index
        with torch.inference_mode():
            for i in range(0, len(predictions), self.batch_size):
                texts = predictions[i : i + self.batch_size]
                args = (prompts[i : i + self.batch_size], texts) if self.include_prompt else (texts,)
                enc = self.tokenizer(*args, padding=True, truncation=True, max_length=self.max_length,
                                     return_tensors="pt").to(self.device)
                logits = self.model(**enc).logits.float()  # (B, num_labels)
                if self.num_labels == 1:
                    v = logits[:, 0]
                    if self.output == "prob":
                        v = torch.sigmoid(v)
                    elif self.output == "logprob":
                        v = torch.nn.functional.logsigmoid(v)
                elif self.output == "logit":
                    v = logits[:, k]
                elif self.output == "prob":
                    v = logits.softmax(-1)[:, k]
                else:
                    v = logits.log_softmax(-1)[:, k]
                out.extend(v.cpu().tolist())  # one host sync per batch
        return out

    def corpus_score(self, predictions: Sequence[str], references: Sequence[Sequence[str]], prompts=None) -> float:
        """Mean reward over the corpus."""
        values = self(predictions, references, prompts)
        return sum(values) / len(values) if values else 0.0
