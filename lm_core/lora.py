"""LoRA helpers: the base model as a frozen reference, and merging adapters into it (``update_reference``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch as th
from torch import nn

from text_envs.errors import TextEnvsError

__all__ = ["LoraReference", "merge_lora_adapters", "apply_lora"]


class LoraReference(nn.Module):
    """The base model of a LoRA policy with its adapters disabled: a LoRA policy's frozen reference, as a module
    with ``config``, ``generate`` and ``forward`` (e.g. for :func:`lm_core.backends.greedy_baseline`).

    It holds no parameters of its own (the policy's ``state_dict`` is unchanged) and shares the base weights.
    """

    def __init__(self, peft_model: nn.Module) -> None:
        super().__init__()
        object.__setattr__(self, "_peft_model", peft_model)  # not a submodule: no second copy in state_dict

    @property
    def config(self) -> Any:
        return self._peft_model.get_base_model().config

    @property
    def generation_config(self) -> Any:
        return self._peft_model.get_base_model().generation_config

    def get_base_model(self) -> nn.Module:
        """The Hugging Face model under the adapters (its weights are this reference's)."""
        return self._peft_model.get_base_model()

    def parameters(self, recurse: bool = True) -> Iterator[nn.Parameter]:  # type: ignore[override]
        """The base model's parameters (LoRA parameters excluded)."""
        return (p for n, p in self._peft_model.named_parameters() if "lora_" not in n)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        with self._peft_model.disable_adapter():
            return self._peft_model(*args, **kwargs)

    def generate(self, *args: Any, **kwargs: Any) -> Any:
        """The base model's ``generate``, adapters disabled."""
        with self._peft_model.disable_adapter():
            return self._peft_model.generate(*args, **kwargs)


@th.no_grad()
def merge_lora_adapters(peft_model: nn.Module) -> None:
    """Add every LoRA adapter's update into its base weight, then zero its B matrix (A for embeddings), so the
    model computes the same function and its adapters are at their initial value (zero update)."""
    from peft.tuners.lora import LoraLayer

    for module in peft_model.modules():
        if not isinstance(module, LoraLayer):
            continue
        for name in list(module.active_adapters):
            if getattr(module, "use_dora", {}).get(name, False):
                raise TextEnvsError("update_reference() with DoRA adapters is not supported: use plain LoRA")
            if name not in module.lora_A and name not in getattr(module, "lora_embedding_A", {}):
                continue
            module.merge(adapter_names=[name])
            module.merged_adapters.remove(name)  # merged into the base; the adapter itself restarts from zero
            if name in module.lora_B:
                module.lora_B[name].weight.zero_()
                if getattr(module.lora_B[name], "bias", None) is not None:
                    module.lora_B[name].bias.zero_()
            else:
                module.lora_embedding_B[name].zero_()


def apply_lora(lm: nn.Module, lora: Any) -> nn.Module:
    """``lm`` with LoRA adapters (only they train): ``lora`` is a ``peft.LoraConfig`` or its kwargs as a dict."""
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError as e:  # pragma: no cover - peft is installed here
        raise TextEnvsError("lora=... needs peft: pip install peft") from e
    config = lora if isinstance(lora, LoraConfig) else LoraConfig(**dict(lora))
    try:
        return get_peft_model(lm, config)
    except (ValueError, KeyError) as e:  # no target modules given for an architecture peft has no default for, or
        # names that match no layer: say which linear layers the model has
        linear = sorted({name.rsplit(".", 1)[-1] for name, m in lm.named_modules()
                         if isinstance(m, nn.Linear) or type(m).__name__ == "Conv1D"})
        raise TextEnvsError(
            f"LoRA could not be put on this model ({type(e).__name__}: {e}). Name the linear layers to adapt in "
            f"target_modules (--lora-target-modules, comma separated); this model's are named "
            f"{', '.join(linear[:12])}{' ...' if len(linear) > 12 else ''}."
        ) from e
