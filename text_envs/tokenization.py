"""Tokenizers of text-envs: the shipped default, any local or hub tokenizer, and tiny symbol tokenizers.

``transformers`` is imported inside the functions, so ``import text_envs`` stays light.

The shipped default (``text_envs/assets/tokenizer``, built by ``scripts/build_tokenizer.py``) is a 4,000-token
BPE tokenizer with T5 conventions: ``<pad>`` = 0, ``</s>`` = 1 (EOS, appended by encoding), ``<unk>`` = 2,
then the byte tokens ``<0x00>``..``<0xFF>`` (ids 3..258) so that any character falls back to its UTF-8 bytes.
``decode(encode(text), skip_special_tokens=True) == text`` for every Unicode string, without Unicode
normalization, except text containing ``"▁"`` (U+2581, which decodes as a space) or the literal strings
``"<pad>"``, ``"</s>"``, ``"<unk>"``.
"""

from __future__ import annotations

import os
import re
import socket
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from text_envs.errors import TextEnvsError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase, PreTrainedTokenizerFast

__all__ = ["DEFAULT_TOKENIZER_DIR", "TokenizerLoadError", "load_tokenizer", "make_symbol_tokenizer"]

DEFAULT_TOKENIZER_DIR: Path = Path(__file__).resolve().parent / "assets" / "tokenizer"
"""Folder of the shipped default tokenizer (loadable with ``AutoTokenizer.from_pretrained``)."""

SYMBOL_SPECIAL_TOKENS = ("<pad>", "</s>", "<unk>")
_HUB_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*(/[A-Za-z0-9][A-Za-z0-9_.\-]*)?$")
_HUB_PROBE_TIMEOUT_S = 3.0
_FIX = (
    "Pass a local folder instead (one written by `tokenizer.save_pretrained(folder)` on a machine with "
    "network access, or a downloaded hub snapshot): load_tokenizer('/path/to/folder'); or use the shipped "
    "tokenizer: load_tokenizer(None)."
)


class TokenizerLoadError(TextEnvsError):
    """A tokenizer that could not be loaded (unknown folder or hub name, offline hub, missing EOS token)."""


def load_tokenizer(spec: Any = None) -> PreTrainedTokenizerBase:
    """Return the tokenizer named by ``spec``.

    :param spec: ``None`` or ``"default"``: the shipped tokenizer (:data:`DEFAULT_TOKENIZER_DIR`);
        a ``PreTrainedTokenizerBase``: returned as is (same object); a ``str`` or ``os.PathLike``: a local
        folder (or a ``tokenizer.json`` file) if it exists, otherwise a Hugging Face hub name such as
        ``"t5-small"``, loaded with ``AutoTokenizer.from_pretrained``. A hub name is first looked up in the
        local cache; when it is not cached and the hub is offline (``HF_HUB_OFFLINE=1``) or unreachable (a
        3-second connection probe), this fails at once instead of waiting for network time-outs.
    :return: the tokenizer, picklable (``SubprocVecEnv`` pickles envs). Its ``eos_token_id`` is set; a
        tokenizer without a pad token (causal tokenizers such as GPT-2) gets ``pad_token = eos_token``
        (set on the object itself, also when one was passed in).
    :raises TokenizerLoadError: unknown folder, uncached hub name that cannot be fetched (the message says
        how to pass a local folder instead), or a tokenizer without an EOS token.
    """
    from transformers import PreTrainedTokenizerBase

    if spec is None or (isinstance(spec, str) and spec == "default"):
        tokenizer = _load_local(DEFAULT_TOKENIZER_DIR, "the shipped default tokenizer")
        where = "the shipped default tokenizer"
    elif isinstance(spec, PreTrainedTokenizerBase):
        tokenizer, where = spec, f"tokenizer {type(spec).__name__}"
    elif isinstance(spec, (str, os.PathLike)):
        path = Path(spec).expanduser()
        where = f"tokenizer {os.fspath(spec)!r}"
        if path.exists():
            tokenizer = _load_local(path, where)
        elif not isinstance(spec, str) or not _HUB_NAME.match(spec) or ".." in spec:
            raise TokenizerLoadError(
                f"{where} is neither an existing local path nor a hub name: expected a folder with tokenizer "
                f"files, a tokenizer.json file or a hub name like 'org/name'. Check the path (absolute: "
                f"{path.resolve()})."
            )
        else:
            tokenizer = _load_hub(spec)
    else:
        raise TokenizerLoadError(
            f"expected None, 'default', a transformers tokenizer, a folder or a hub name, got "
            f"{type(spec).__name__} {spec!r}."
        )
    return _ensure_special_tokens(tokenizer, where)


def _load_local(path: Path, where: str) -> PreTrainedTokenizerBase:
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    try:
        if path.is_dir():
            return AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        if (path.parent / "tokenizer_config.json").is_file():
            return AutoTokenizer.from_pretrained(str(path.parent), local_files_only=True)
        tokenizer = PreTrainedTokenizerFast(tokenizer_file=str(path), clean_up_tokenization_spaces=False)
    except Exception as err:  # transformers raises OSError, ValueError, JSON errors... depending on the files
        raise TokenizerLoadError(
            f"could not load {where} from {path}: {type(err).__name__}: {err}. Expected a folder written by "
            f"`tokenizer.save_pretrained(folder)` (tokenizer.json or vocabulary files + tokenizer_config.json) "
            f"or a tokenizers `tokenizer.json` file."
        ) from err
    # a bare tokenizer.json names no special tokens: adopt the usual names when the vocabulary has them
    vocab = tokenizer.get_vocab()
    for attr, names in (("eos_token", ("</s>", "<|endoftext|>", "<eos>", "[SEP]")),
                        ("pad_token", ("<pad>", "[PAD]")), ("unk_token", ("<unk>", "[UNK]"))):
        if getattr(tokenizer, attr) is None:
            found = next((n for n in names if n in vocab), None)
            if found is not None:
                setattr(tokenizer, attr, found)
    return tokenizer


def _offline() -> bool:
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(var, "").strip().upper() in ("1", "ON", "YES", "TRUE"):
            return True
    try:
        from huggingface_hub import constants

        return bool(constants.HF_HUB_OFFLINE)
    except Exception:  # pragma: no cover - huggingface_hub is a transformers dependency
        return False


def _unreachable(endpoint: str, timeout: float | None = None) -> str | None:
    """Why ``endpoint`` (or the HTTPS proxy) cannot be reached within ``timeout`` seconds, or None if it can.

    The probe runs in a daemon thread so that a slow DNS lookup cannot block the caller past ``timeout``.
    """
    timeout = _HUB_PROBE_TIMEOUT_S if timeout is None else timeout
    proxy = next((os.environ[v] for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")
                  if os.environ.get(v)), None)
    url = urlsplit(proxy if proxy and "://" in proxy else (f"http://{proxy}" if proxy else endpoint))
    host, port = url.hostname, url.port or (443 if url.scheme == "https" else 80)
    if not host:
        return f"cannot parse the endpoint {endpoint!r}"
    outcome: dict[str, str | None] = {}

    def probe() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            outcome["reason"] = None
        except OSError as err:
            outcome["reason"] = f"{type(err).__name__}: {err}"

    thread = threading.Thread(target=probe, name="text_envs-hub-probe", daemon=True)
    thread.start()
    thread.join(timeout)
    if "reason" not in outcome:
        return f"no connection to {host}:{port} within {timeout:.0f} s"
    return outcome["reason"]


def _load_hub(name: str) -> PreTrainedTokenizerBase:
    from transformers import AutoTokenizer

    try:  # the local cache first: instant, and what an offline machine with a warm cache needs
        return AutoTokenizer.from_pretrained(name, local_files_only=True)
    except Exception:
        pass
    if _offline():
        raise TokenizerLoadError(
            f"hub tokenizer {name!r} is not in the local Hugging Face cache and the hub is switched off "
            f"(HF_HUB_OFFLINE/TRANSFORMERS_OFFLINE is set). {_FIX}"
        )
    try:
        from huggingface_hub import constants

        endpoint = constants.ENDPOINT
    except Exception:  # pragma: no cover
        endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    reason = _unreachable(endpoint)
    if reason is not None:
        raise TokenizerLoadError(
            f"hub tokenizer {name!r} is not in the local Hugging Face cache and the hub ({endpoint}) cannot be "
            f"reached ({reason}). {_FIX}"
        )
    try:
        return AutoTokenizer.from_pretrained(name)
    except Exception as err:
        raise TokenizerLoadError(
            f"could not load hub tokenizer {name!r}: {type(err).__name__}: {err}. Check the name on "
            f"{endpoint} (expected 'org/name' of a repository with tokenizer files). {_FIX}"
        ) from err


def _ensure_special_tokens(tokenizer: PreTrainedTokenizerBase, where: str) -> PreTrainedTokenizerBase:
    if tokenizer.eos_token_id is None:
        raise TokenizerLoadError(
            f"{where} has no EOS token (eos_token is None), but episodes end when the policy emits EOS. Give it "
            f"one, e.g. tokenizer.add_special_tokens({{'eos_token': '</s>'}}) (then resize the model's "
            f"embeddings), or use a tokenizer that has one."
        )
    if tokenizer.pad_token_id is None:  # causal LMs (GPT-2...) have none: pad with EOS, masks tell them apart
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def make_symbol_tokenizer(symbols: Sequence[str]) -> PreTrainedTokenizerFast:
    """A tiny word-level tokenizer over ``symbols`` (for toy tasks such as TextCopy-v0).

    Ids ``0, 1, 2`` are ``<pad>``, ``</s>`` (EOS) and ``<unk>``; symbol ``i`` gets id ``3 + i``. Text is
    symbols separated by whitespace; encoding appends no EOS; decoding joins symbols with single spaces.

    >>> tok = make_symbol_tokenizer(["a", "b", "c"])
    >>> tok("c a b")["input_ids"]
    [5, 3, 4]

    :param symbols: distinct, non-empty strings without whitespace, none of them a special token.
    :return: a picklable ``PreTrainedTokenizerFast`` with ``len(tok) == 3 + len(symbols)``.
    :raises TextEnvsError: for an empty list, duplicates, whitespace inside a symbol, a non-string or a
        special-token name.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    if isinstance(symbols, str):
        raise TextEnvsError(
            f"expected a sequence of symbols, got the string {symbols!r}; pass list({symbols!r}) for one symbol "
            f"per character."
        )
    symbols = list(symbols)
    if not symbols:
        raise TextEnvsError("expected at least one symbol, got an empty sequence.")
    seen: set[str] = set()
    for s in symbols:
        if not isinstance(s, str) or not s or any(c.isspace() for c in s):
            raise TextEnvsError(f"expected non-empty symbols without whitespace, got {s!r}.")
        if s in SYMBOL_SPECIAL_TOKENS:
            raise TextEnvsError(f"symbol {s!r} is a reserved special token; choose another name.")
        if s in seen:
            raise TextEnvsError(f"expected distinct symbols, got {s!r} twice.")
        seen.add(s)
    vocab = {tok: i for i, tok in enumerate(SYMBOL_SPECIAL_TOKENS)}
    vocab.update({s: len(SYMBOL_SPECIAL_TOKENS) + i for i, s in enumerate(symbols)})
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    backend.decoder = decoders.WordPiece(prefix="\0", cleanup=False)  # joins tokens with single spaces
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="<pad>", eos_token="</s>", unk_token="<unk>",
        clean_up_tokenization_spaces=False,
    )
    return tokenizer
