"""A tokenizer as plain data, so that a saved policy (or a remote worker) rebuilds it without files or a hub; and
the tokenizer of a model folder or a spec."""

from __future__ import annotations

import os
from typing import Any

__all__ = ["serialize_tokenizer", "deserialize_tokenizer", "tokenizer_in_folder", "load_tokenizer_spec"]


def serialize_tokenizer(tokenizer: Any) -> dict[str, Any] | None:
    """A fast tokenizer as a plain dict (its JSON, special tokens, padding side); ``None`` for a slow one."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return None
    special = {}
    for name in ("pad_token", "eos_token", "unk_token", "bos_token"):
        tok = getattr(tokenizer, name, None)
        if tok is not None:
            special[name] = str(tok)
    return {"json": backend.to_str(), "special": special, "padding_side": str(tokenizer.padding_side)}


def deserialize_tokenizer(state: dict[str, Any]) -> Any:
    """The ``PreTrainedTokenizerFast`` that :func:`serialize_tokenizer` saved."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    tok = PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_str(state["json"]), **state["special"])
    tok.padding_side = state.get("padding_side", "right")
    return tok


def tokenizer_in_folder(path: str | os.PathLike) -> Any:
    """The tokenizer saved in a model folder, or None when it holds none that transformers can load."""
    try:
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(os.fspath(path))
    except Exception:  # a model folder without a tokenizer: the caller falls back to the env's
        return None


def load_tokenizer_spec(spec: str | os.PathLike) -> Any:
    """A tokenizer from a spec (:func:`text_envs.tokenization.load_tokenizer`: the shipped one, a path or a name)."""
    try:
        from text_envs.tokenization import load_tokenizer

        return load_tokenizer(spec)
    except ImportError:
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(os.fspath(spec))
