"""A tokenizer as plain data, so that a saved policy (or a remote worker) rebuilds it without files or a hub."""

from __future__ import annotations

from typing import Any

__all__ = ["serialize_tokenizer", "deserialize_tokenizer"]


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
