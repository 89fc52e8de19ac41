"""Train the shipped default model: a tiny T5 warm-started by supervised learning on the embedded tasks.

    python scripts/train_default_model.py [--minutes 50] [--out text_envs/assets/model]

Seeded. Teacher forcing on the train splits (difficulty 1) of TextSummarization-v0, DialogueGeneration-v0,
MachineTranslation-v0 (English -> Syn), TextContinuation-v0 (review continuations, half of them negative) and
MachineTranslation-v0 English -> Chinese and French -> Chinese (mixed evenly, prompts formatted and tokenized
exactly as the envs do, with the tokenizer ``scripts/build_tokenizer.py`` builds), AdamW with a
linear warm-up and a linear decay over the time budget; the validation loss is checked every
``--eval-every`` steps, the best weights are kept, and training stops early at the validation plateau
(``--patience`` checks in a row without a 0.5% gain). The result is written as fp16 safetensors (``model.safetensors``,
well under 8 MB) with its ``config.json``, ``generation_config.json`` and a ``training.json`` holding the
settings and the validation metrics (greedy ROUGE-L / chrF / METEOR / sentiment, via the env rewards) it reached.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import time
from pathlib import Path

import numpy as np
import torch

# The shipped model's tasks: the first three, then (issues 12 and 17, trained once for all of them on the tokenizer
# that ``scripts/build_tokenizer.py`` builds by default, with French, Chinese and the reviews) review continuation
# and the English/French -> Chinese pairs. ``ID:src-tgt`` picks a translation pair.
FIRST_TASKS = ("TextSummarization-v0", "DialogueGeneration-v0", "MachineTranslation-v0")
TASKS = FIRST_TASKS + ("TextContinuation-v0", "MachineTranslation-v0:en-zh", "MachineTranslation-v0:fr-zh")


def env_kwargs_of(task: str) -> tuple[str, dict]:
    """``"MachineTranslation-v0:en-zh"`` -> ``("MachineTranslation-v0", {"source_lang": "en", "target_lang": "zh"})``."""
    env_id, _, pair = task.partition(":")
    if not pair:
        return env_id, {}
    source, _, target = pair.partition("-")
    if not (source and target):
        raise SystemExit(f"--tasks: expected ID or ID:src-tgt (e.g. MachineTranslation-v0:en-zh), got {task!r}")
    return env_id, {"source_lang": source, "target_lang": target}


def model_config(vocab_size: int):
    from transformers import T5Config

    return T5Config(
        vocab_size=vocab_size, d_model=128, d_kv=32, d_ff=512, num_layers=3, num_decoder_layers=3,
        num_heads=4, relative_attention_num_buckets=32, relative_attention_max_distance=128,
        dropout_rate=0.0, feed_forward_proj="gated-gelu", tie_word_embeddings=True,
        pad_token_id=0, eos_token_id=1, decoder_start_token_id=0,
    )


def make_envs(split: str, tasks: tuple[str, ...] = TASKS):
    import gymnasium as gym

    import text_envs  # noqa: F401

    envs = {}
    for task in tasks:
        env_id, kwargs = env_kwargs_of(task)
        envs[task] = gym.make(env_id, split=split, **kwargs).unwrapped
    return envs


def batch_of(envs, indices_by_task, tokenizer, device):
    """Teacher-forcing tensors for a list of (task, index) pairs."""
    prompts, labels = [], []
    for task, index in indices_by_task:
        env = envs[task]
        prompt, refs = env.example_text(index)
        ids, mask = env.encode_prompt(prompt)
        prompts.append(ids[mask == 1])
        target = tokenizer(refs[0], add_special_tokens=False)["input_ids"][: env.max_new_tokens - 1]
        labels.append(list(target) + [tokenizer.eos_token_id])
    S = max(len(p) for p in prompts)
    L = max(len(label) for label in labels)
    input_ids = torch.zeros(len(prompts), S, dtype=torch.long)
    attention = torch.zeros(len(prompts), S, dtype=torch.long)
    label_ids = torch.full((len(prompts), L), -100, dtype=torch.long)
    for i, (p, label) in enumerate(zip(prompts, labels)):
        input_ids[i, : len(p)] = torch.as_tensor(p)
        attention[i, : len(p)] = 1
        label_ids[i, : len(label)] = torch.as_tensor(label)
    return input_ids.to(device), attention.to(device), label_ids.to(device)


@torch.no_grad()
def validate(model, envs, tokenizer, n_per_task: int, device) -> dict[str, float]:
    """Validation loss and greedy-decoding task rewards on the first examples of the validation split."""
    model.eval()
    out: dict[str, float] = {}
    losses = []
    for task, env in envs.items():
        pairs = [(task, i) for i in range(n_per_task)]
        input_ids, attention, labels = batch_of(envs, pairs, tokenizer, device)
        losses.append(model(input_ids=input_ids, attention_mask=attention, labels=labels).loss.item())
        gen = model.generate(input_ids=input_ids, attention_mask=attention, max_new_tokens=env.max_new_tokens,
                             do_sample=False)
        texts = tokenizer.batch_decode(gen, skip_special_tokens=True)
        refs = [env.example_text(i)[1] for i in range(n_per_task)]
        scores = env.reward(texts, refs)
        out[f"{task}/{env.reward.name}"] = float(np.mean(scores))
    out["val_loss"] = float(np.mean(losses))
    model.train()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=50.0, help="wall-time budget of the training loop")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "text_envs" / "assets" / "model"))
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--eval-every", type=int, default=250)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tasks", default=",".join(TASKS),
                        help="comma-separated env ids (ID:src-tgt for a translation pair) mixed evenly")
    parser.add_argument("--init", default=None,
                        help="continue from a model folder written by this script (a second phase: its training.json "
                             "history is kept) instead of a fresh model")
    parser.add_argument("--patience", type=int, default=4,
                        help="stop once the validation loss has not improved by 0.5%% for this many checks (the plateau)")
    args = parser.parse_args()

    from transformers import GenerationConfig, T5ForConditionalGeneration

    from text_envs.tokenization import load_tokenizer

    torch.manual_seed(args.seed)
    random.seed(args.seed)
    torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    tokenizer = load_tokenizer()
    earlier: list[dict] = []
    if args.init:  # a later phase: the earlier phases' settings and curves travel on in training.json
        model = T5ForConditionalGeneration.from_pretrained(args.init, dtype=torch.float32).to(device)
        report = json.loads((Path(args.init) / "training.json").read_text())
        earlier = report.get("phases", [report])
        if model.config.vocab_size != len(tokenizer):
            raise SystemExit(f"--init {args.init}: its vocabulary ({model.config.vocab_size}) is not the tokenizer's "
                             f"({len(tokenizer)})")
    else:
        model = T5ForConditionalGeneration(model_config(len(tokenizer))).to(device)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"tiny T5: {n_params / 1e6:.2f}M parameters, vocabulary {len(tokenizer)}")
    tasks = tuple(t.strip() for t in args.tasks.split(",") if t.strip())
    train_envs, val_envs = make_envs("train", tasks), make_envs("validation", tasks)
    sizes = {task: env.num_examples for task, env in train_envs.items()}
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    warmup = 200
    rng = random.Random(args.seed)
    start, step, best, best_state, history, stale = time.time(), 0, math.inf, None, [], 0
    budget = args.minutes * 60
    model.train()
    while time.time() - start < budget:
        pairs = [(task, rng.randrange(sizes[task])) for task in (rng.choice(tasks) for _ in range(args.batch_size))]
        input_ids, attention, labels = batch_of(train_envs, pairs, tokenizer, device)
        frac = (time.time() - start) / budget
        lr = args.lr * min(1.0, (step + 1) / warmup) * max(0.05, 1.0 - frac)
        for group in opt.param_groups:
            group["lr"] = lr
        loss = model(input_ids=input_ids, attention_mask=attention, labels=labels).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        if step % args.eval_every == 0:
            metrics = validate(model, val_envs, tokenizer, 64, device)
            metrics.update(step=step, minutes=round((time.time() - start) / 60, 2), train_loss=round(loss.item(), 4))
            history.append(metrics)
            print(json.dumps(metrics), flush=True)
            stale = 0 if metrics["val_loss"] < 0.995 * best else stale + 1
            if metrics["val_loss"] < best:
                best, best_state = metrics["val_loss"], {k: v.detach().clone() for k, v in model.state_dict().items()}
            if stale >= args.patience:
                print(f"validation loss has plateaued ({args.patience} checks without a 0.5% gain); stopping")
                break
    if best_state is not None:
        model.load_state_dict(best_state)
    final = validate(model, val_envs, tokenizer, 128, device)
    print("final (best checkpoint, 128 validation examples per task):", json.dumps(final))

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model.generation_config = GenerationConfig(decoder_start_token_id=0, eos_token_id=1, pad_token_id=0)
    model.to(torch.float16).save_pretrained(out)  # fp16 storage; loaders upcast with dtype=torch.float32
    phase = {"args": vars(args), "parameters": n_params, "steps": step, "minutes": round((time.time() - start) / 60, 2),
             "validation": final, "history": history}
    report = dict(phase, phases=earlier + [phase]) if earlier else phase
    (out / "training.json").write_text(json.dumps(report, indent=1))
    size = os.path.getsize(out / "model.safetensors")
    print(f"wrote {out} ({size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
