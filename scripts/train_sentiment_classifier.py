"""Train the shipped tiny sentiment classifier, ``text_envs/assets/sentiment/``.

Run from the repository root::

    python scripts/train_sentiment_classifier.py                  # rebuild in place (about a minute, 1 CPU thread)
    python scripts/train_sentiment_classifier.py --out /tmp/sent  # somewhere else

What it builds: a 2-layer BERT-style sequence classifier (hidden size 64, about 0.33 M parameters, 1.3 MB)
with the shipped tokenizer, labels ``negative`` (0) / ``positive`` (1), trained on the continuations of the
embedded reviews (:func:`text_envs.data.reviews.review_row`, TRAIN split, difficulties 1-3 in turn) to
predict the review's label. It is the default model of ``make_reward("sentiment-classifier")``, the "learned
reward model" path of ``TextContinuation-v0`` (a :class:`text_envs.rewards.LearnedReward`: the probability
of ``positive``). It scores the text it is given, as the env gives it the generated continuation.

The script reports the held-out accuracy on the first ``--eval-rows`` rows of the TEST split at each
difficulty (the splits' openings are disjoint; continuations are built from shared phrase pools, so this
measures the phrases, not unseen wording), plus a few hand-written reviews outside the templates, and
writes them to ``training.json`` beside the weights. Seeded: two runs on the same machine write the same
weights.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from text_envs.data.reviews import review_row  # noqa: E402

#: hand-written reviews, not from the generator's templates: a sanity check of generalisation
HANDWRITTEN = (
    ("An absolutely wonderful film. I loved every minute and would happily watch it again.", 1),
    ("The staff were lovely and the food was delicious. Highly recommended.", 1),
    ("Great kettle, it works perfectly and looks beautiful.", 1),
    ("A dreadful film. The story was boring and I hated the ending.", 0),
    ("The food was cold and the service was awful. We will not be going back.", 0),
    ("It broke after two days. What a waste of money.", 0),
)


def rows(split: str, n: int) -> list[tuple[str, int]]:
    """``n`` (continuation, label) pairs of ``split``, difficulties 1, 2, 3 in turn."""
    out = []
    for i in range(n):
        r = review_row(split, i // 3, i % 3 + 1)
        out.append((r["continuation"], r["label"]))
    return out


def encode(tokenizer, texts: list[str], max_length: int):
    return tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")


@torch.no_grad()
def accuracy(model, tokenizer, data: list[tuple[str, int]], max_length: int) -> float:
    model.eval()
    correct = 0
    for i in range(0, len(data), 256):
        chunk = data[i : i + 256]
        enc = encode(tokenizer, [t for t, _ in chunk], max_length)
        pred = model(**enc).logits.argmax(-1)
        correct += int((pred == torch.as_tensor([y for _, y in chunk])).sum())
    model.train()
    return correct / len(data)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "text_envs" / "assets" / "sentiment")
    parser.add_argument("--train-rows", type=int, default=24_000)
    parser.add_argument("--eval-rows", type=int, default=1_000, help="test rows per difficulty")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--max-length", type=int, default=96)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)

    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    random.seed(args.seed)
    tok_dir = ROOT / "text_envs" / "assets" / "tokenizer"
    tokenizer = AutoTokenizer.from_pretrained(tok_dir)
    config = BertConfig(
        vocab_size=len(tokenizer), hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=128, max_position_embeddings=128, type_vocab_size=1, pad_token_id=tokenizer.pad_token_id,
        num_labels=2, id2label={0: "negative", 1: "positive"}, label2id={"negative": 0, "positive": 1},
    )
    model = BertForSequenceClassification(config)
    n_params = sum(p.numel() for p in model.parameters())
    train = rows("train", args.train_rows)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    steps = args.epochs * (len(train) // args.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=steps, pct_start=0.1)
    t0 = time.time()
    step = 0
    model.train()
    for epoch in range(args.epochs):
        rng = random.Random(args.seed * 1000 + epoch)
        order = list(range(len(train)))
        rng.shuffle(order)
        for b in range(len(train) // args.batch_size):
            chunk = [train[i] for i in order[b * args.batch_size : (b + 1) * args.batch_size]]
            enc = encode(tokenizer, [t for t, _ in chunk], args.max_length)
            loss = model(**enc, labels=torch.as_tensor([y for _, y in chunk])).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            step += 1
            if step % 100 == 0:
                print(f"step {step}/{steps}  loss {loss.item():.4f}  {time.time() - t0:.0f}s", flush=True)

    held_out = {}
    for d in (1, 2, 3):
        test_rows = [review_row("test", i, d) for i in range(args.eval_rows)]
        data = [(r["continuation"], r["label"]) for r in test_rows]
        held_out[f"test_difficulty_{d}"] = accuracy(model, tokenizer, data, args.max_length)
    handwritten = accuracy(model, tokenizer, list(HANDWRITTEN), args.max_length)
    print("held-out accuracy:", held_out, " hand-written:", handwritten)

    args.out.mkdir(parents=True, exist_ok=True)
    model.eval()
    model.save_pretrained(args.out)
    tokenizer.save_pretrained(args.out)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):  # the exact shipped files
        if (tok_dir / name).exists():
            shutil.copyfile(tok_dir / name, args.out / name)
    report = {"args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items() if k != "out"},
              "parameters": n_params, "steps": step, "minutes": round((time.time() - t0) / 60, 2),
              "held_out_accuracy": held_out, "handwritten_accuracy": handwritten,
              "handwritten": [t for t, _ in HANDWRITTEN]}
    (args.out / "training.json").write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {args.out} ({sum(f.stat().st_size for f in args.out.iterdir()) / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
