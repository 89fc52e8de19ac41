"""The ``text-envs`` command line.

    text-envs train [--env ID] [--algo ppo|grpo|rloo|...|supervised] [--steps N] [--out DIR]  train, evaluate, save
    text-envs train --engine rllib [--algo ppo|impala|appo] [--num-env-runners N]      the same on Ray RLlib
    text-envs eval [MODEL] [--dataset FILE --prompt-field F] [--out DIR]                 a saved model's metrics
    text-envs bench [--preset small|rl-small] [--kl-coefs 0.01,0.05]                   algorithms side by side
    text-envs bench-merge PART PART ... --out DIR                                     join a bench run in parts
    text-envs frontier [--env ID] [--model M] [--samples M] [--betas 1,0.5]         the reward/KL limit of a model
    text-envs demo [--env ID ...] [--seed N]                                            one episode of each env

Every ``train`` option is a field of :class:`text_envs_app.config.TrainConfig`; ``--config FILE`` (JSON or
TOML) may hold them, and flags given on the command line win.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import typing
import warnings
from collections.abc import Sequence

import text_envs
import text_envs.errors


def _demo(args: argparse.Namespace) -> int:
    """Run one episode per env: a random policy, a policy that types the reference, and (text tasks) the
    shipped warm-started model, greedy, through ``sb3_ext.LLMPolicy``."""
    import gymnasium as gym

    for env_id in args.env or sorted(text_envs.ENV_IDS):
        env = gym.make(env_id, render_mode="ansi")
        print(f"=== {env_id}  action space {env.action_space}, prompt {env.unwrapped.max_prompt_tokens} tokens, "
              f"budget {env.unwrapped.max_new_tokens} tokens")
        model = None
        if env_id != "TextCopy-v0":
            from sb3_ext import LLMPolicy

            model = LLMPolicy(env.observation_space, env.action_space, lambda _: 0.0,
                              tokenizer=env.unwrapped.tokenizer)
        for policy in ("random", "reference") + (("shipped model (greedy)",) if model is not None else ()):
            obs, info = env.reset(seed=args.seed)
            env.action_space.seed(args.seed)
            _, refs = env.unwrapped.example_text(info["example_index"])
            if env_id == "TextCopy-v0":
                script = env.unwrapped.targets[info["example_index"]].tolist()
            else:
                script = env.unwrapped.tokenizer(refs[0], add_special_tokens=False)["input_ids"]
                script = list(script) + [env.unwrapped.eos_token_id]
            total, t, done = 0.0, 0, False
            while not done:
                if policy == "random":
                    action = env.action_space.sample()
                elif policy == "reference":
                    action = script[min(t, len(script) - 1)]
                else:
                    action = int(model.predict(obs, deterministic=True)[0])
                obs, reward, done, truncated, info = env.step(action)
                total += reward
                t += 1
                done = done or truncated
            print(f"--- {policy} policy: return {total:.3f}")
            print(env.render())
        print()
    return 0


def _json_object(text: str) -> dict:
    """argparse type of --env-kwargs: a JSON object."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON ({exc.msg} at column {exc.colno}): {text!r}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object such as '{{\"max_prompt_tokens\": 128}}', got {text!r}")
    return value


def _key_value(text: str) -> tuple[str, object]:
    """argparse type of --env-kwarg: KEY=VALUE, VALUE parsed as JSON when it is JSON (128, true, [1, 2],
    "x"), else kept as a string (translation.en)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE (e.g. max_prompt_tokens=128), got {text!r}")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return key.strip().replace("-", "_"), value


TRAIN_GROUPS: dict[str, tuple[str, ...]] = {
    "what to train": ("env", "algo", "engine", "model", "trust_remote_code", "steps", "seed"),
    "data": ("dataset", "train_file", "validation_file", "test_file", "split_seed", "prompt_field", "reference_field",
             "source_lang", "target_lang", "gym_kwargs", "difficulty", "reward", "max_new_tokens"),
    "algorithm": ("group_size", "filter_reward", "n_steps", "batch_size", "n_epochs", "learning_rate", "gamma",
                  "gae_lambda", "clip_range", "ent_coef", "vf_coef", "value_mode", "value_lr_scale", "max_grad_norm",
                  "temperature", "top_p", "top_k", "target_kl", "freeze"),
    "LoRA adapters (peft)": ("lora_r", "lora_alpha", "lora_target_modules"),
    "KL penalty and baseline": ("kl_coef", "kl_target", "kl_mode", "kl_anchor", "baseline"),
    "evaluation": ("eval_examples", "eval_split", "ood_split", "eval_decoding", "best_of_n", "frontier_samples",
                   "curve_points", "curve_examples", "compare_supervised", "supervised_lr"),
    "run folder and resume": ("out", "resume", "overwrite", "checkpoint_every"),
    "performance": ("threads", "n_envs", "vec_env", "device"),
    "Ray RLlib (--engine rllib)": ("num_env_runners", "num_learners"),
}
"""The sections of ``text-envs train --help``, each a list of TrainConfig fields (a field in none of them goes
to "other options", so a new field is never left out of the help)."""

UNSET_DEFAULTS = {
    "filter_reward": "default: not set (supervised: every reference; raft: the algorithm's own rule)",
    "train_file": "default: not set", "validation_file": "default: not set", "test_file": "default: not set",
    "source_lang": "default: the env's", "target_lang": "default: the env's",
    "target_kl": "default: not set (no early stop)",
}
"""What a TrainConfig field left at None means, for the fields whose own text does not say it."""

TRAIN_EXAMPLES = """examples:
  text-envs train --steps 4096 --out runs/first        # PPO on TextContinuation-v0 from the shipped tiny T5
  text-envs train --env TextCopy-v0 --algo grpo --steps 4096 --out runs/copy
  text-envs train --env TextSummarization-v0 --dataset my.jsonl --prompt-field article \\
      --reference-field summary --model MODEL_FOLDER --out runs/mine   # your data and model
  text-envs train --out runs/first --resume           # continue a run stopped by Ctrl-C or a crash
  text-envs train --config run.toml --seed 1           # options from a JSON/TOML file; flags win

Per-env and per-algorithm defaults (text_envs_app.algorithms) go under the flags; config.json in --out records
every value the run used."""


def _default_text(name: str, default: object, text: str) -> str:
    """The help text of a TrainConfig field with its true default: a None default is explained by the field's own
    text ("None: ..." becomes "default: ...") or :data:`UNSET_DEFAULTS`, never shown as "None"."""
    if default is None:
        if "None:" in text:
            return text.replace("None:", "default:")
        if "default:" in text:
            return text
        return f"{text}; {UNSET_DEFAULTS.get(name, 'default: not set')}"
    text = text.replace("None:", "null in a config file:")  # a flag cannot give None
    if isinstance(default, bool) or "default:" in text or "(default " in text:
        return text  # a flag, or a text that states its default itself
    return f"{text} (default: {default})"


def _add_config_flags(parser: argparse.ArgumentParser, only: Sequence[str] | None = None,
                      helps: dict[str, str] | None = None,
                      groups: dict[str, tuple[str, ...]] | None = None) -> None:
    """One flag per TrainConfig field, help text from the field's docstring (CleanRL-style) with its true default;
    ``only`` picks fields (in that order), ``helps`` replaces help texts (``{default}`` in one is the field's
    default), ``groups`` puts the flags in titled sections of the help (the others go to "other options")."""
    from text_envs_app.config import TrainConfig, field_docs

    docs = {**field_docs(), **(helps or {})}
    hints = typing.get_type_hints(TrainConfig)
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    names = list(only) if only is not None else list(fields)
    section = {}  # field name -> the argument group it is added to
    if groups:
        for title, members in groups.items():
            group = parser.add_argument_group(title)
            section.update({name: group for name in members if name in fields})
        if any(name not in section for name in names):
            other = parser.add_argument_group("other options")
            section.update({name: other for name in names if name not in section})
    for name in names:
        f = fields[name]
        target = section.get(name, parser)
        default = f.default if f.default is not dataclasses.MISSING else None
        if name in (helps or {}):
            help_text = docs[name].replace("{default}", str(default))
        else:
            help_text = _default_text(name, default, " ".join(docs.get(name, "").split()))
        help_text = help_text.replace("%", "%%")  # argparse %-formats help texts ("the first 10%")
        if f.name == "gym_kwargs":
            target.add_argument("--env-kwargs", dest="gym_kwargs", type=_json_object, default=argparse.SUPPRESS,
                                metavar="JSON", help=docs["gym_kwargs"].replace("%", "%%"))
            target.add_argument("--env-kwarg", dest="env_kwarg", type=_key_value, action="append", default=[],
                                metavar="KEY=VALUE", help="one gym.make keyword (repeatable); VALUE is read as JSON "
                                "when it is JSON (128, true, \"x\"), else as text")
            continue
        flag = "--" + f.name.replace("_", "-")
        if hints[f.name] is bool:
            target.add_argument(flag, action="store_true", default=argparse.SUPPRESS, help=help_text)
            continue
        kind = typing.get_args(hints[f.name]) or (hints[f.name],)
        kind = next(k for k in kind if k is not type(None))
        target.add_argument(flag, type=kind, default=argparse.SUPPRESS, metavar=f.name.upper(), help=help_text)


def _config_values(args: argparse.Namespace, base: dict | None = None) -> dict:
    """TrainConfig values: ``base`` (a run's), then the --config file, then the flags given; --env-kwarg pairs
    go on top of --env-kwargs."""
    from text_envs_app.config import TrainConfig, load_config_file

    values = dict(base or {})
    if getattr(args, "config", None):
        values.update(load_config_file(args.config))
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    values.update({k: v for k, v in vars(args).items() if k in names})
    pairs = getattr(args, "env_kwarg", None) or []
    if pairs:
        values["gym_kwargs"] = {**(values.get("gym_kwargs") or {}), **dict(pairs)}
    return values


def _config(args: argparse.Namespace):
    from text_envs_app.algorithms import make_config

    return make_config(**_config_values(args))  # the env's and algorithm's defaults under the user's values


def _train(args: argparse.Namespace) -> int:
    from text_envs_app.train import train

    result = train(_config(args))
    return 130 if result.get("interrupted") else 0


_DATA_CHOICE_KEYS = ("dataset", "train_file", "validation_file", "test_file", "split_seed")


def _eval(args: argparse.Namespace) -> int:
    from text_envs.data.sources import is_local_path
    from text_envs_app.config import TrainConfig
    from text_envs_app.eval_job import RUN_DATA_KEYS, evaluate_saved, find_saved_model, run_split_of_file

    found = find_saved_model(args.model_path)
    run = {k: v for k, v in found["run"].items() if k in RUN_DATA_KEYS}
    for key in ("algo", "engine"):  # an RLlib run's algo (impala, appo) is valid with its engine only
        if found["run"].get(key):
            run[key] = found["run"][key]
    given = vars(args)  # the namespace itself: a file popped here is not read again as --dataset below
    if "dataset" in given:  # the user's data replaces the run's: every row of a file, but of the run's own its test rows
        run = {k: v for k, v in run.items() if k not in _DATA_CHOICE_KEYS}
        if is_local_path(given["dataset"]):
            f = given.pop("dataset")
            own = run_split_of_file(found["run"], f)  # the run's own file: its test rows, as it split them
            run.update(own if own is not None else dict(train_file=f, validation_file=f, test_file=f))
    values = _config_values(args, run)
    out = values.pop("out", None)  # eval's own --out (results, not a training run)
    evaluate_saved(args.model_path, TrainConfig(**values), out=out, overwrite=args.overwrite)
    return 0


def _bench(args: argparse.Namespace) -> int:
    from text_envs_app.bench import run_benchmark

    methods = [m.strip() for m in args.methods.split(",") if m.strip()] if args.methods else None
    given = {"model": args.model, "reward_model": args.reward_model, "dataset": args.dataset, "steps": args.steps,
             "eval_examples": args.eval_examples}
    overrides = {k: v for k, v in given.items() if v is not None}  # the preset's own values for the rest
    run_benchmark(args.preset, args.out, seeds=args.seeds, overwrite=args.overwrite, methods=methods,
                  kl_coefs=args.kl_coefs, device=args.device, overrides=overrides, first_seed=args.first_seed)
    return 0


def _bench_merge(args: argparse.Namespace) -> int:
    from text_envs_app.bench_merge import merge_benchmarks

    merge_benchmarks(args.parts, args.out, overwrite=args.overwrite)
    return 0


def _kl_coefs(text: str) -> list[float]:
    """argparse type of bench --kl-coefs: comma-separated numbers >= 0."""
    try:
        coefs = [float(k) for k in text.split(",") if k.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers such as 0.01,0.05,0.2, got {text!r}") from None
    if not coefs or any(not (k >= 0.0 and k != float("inf")) for k in coefs):
        raise argparse.ArgumentTypeError(f"expected one or more finite numbers >= 0 such as 0.01,0.05,0.2, got {text!r}")
    return coefs


EVAL_HELP = {
    "env": "the registered env id (default: the run's, else {default}, as for text-envs train)",
    "dataset": "the data to evaluate on: a local .jsonl/.json/.csv file (every row of it is evaluated; the file "
               "the run was split from: its test rows) or a hub name; default: the run's own evaluation split (the "
               "same seeded split of its file), else the embedded data",
    "eval_examples": "evaluate the first N examples of the split",
    "device": "torch device: cpu, cuda, or auto (default: {default})",
    "trust_remote_code": "let transformers run the Python code the evaluated model ships (its config.json's "
                         "auto_map); never read from a run folder",
}


class CommandParser(argparse.ArgumentParser):
    """The parser of one ``text-envs`` command: an option it does not know is refused with this command's usage and
    the closest of its options ("did you mean --prompt-field?"), not with the top-level usage; options are never
    abbreviated (``--step`` is a typo of ``--steps``, and an abbreviation would break when an option is added)."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def parse_known_args(self, args=None, namespace=None):
        """argparse's, refusing what this command does not take here rather than in the top-level parser."""
        namespace, extras = super().parse_known_args(args, namespace)
        if extras:
            options = [a for a in extras if a.startswith("-") and a != "-"]
            self.error(f"unrecognized arguments: {' '.join(extras)}{self.suggestion(options[0]) if options else ''}")
        return namespace, extras

    def suggestion(self, given: str) -> str:
        """``". Did you mean '--x'?"`` for the options of this command closest to ``given`` (``--prompt_field``
        and ``--prompt-field=x`` are compared as ``--prompt-field``), or ``""``."""
        flag = given.split("=", 1)[0].replace("_", "-")
        options = [o for action in self._actions for o in action.option_strings if o.startswith("--")]
        text = text_envs.errors.did_you_mean(flag, [flag] if flag in options else options, n=2)
        return f".{text}" if text else ""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="text-envs", description="Text generation as reinforcement learning.")
    parser.add_argument("--version", action="version", version=f"text-envs {text_envs.__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=CommandParser)

    train = sub.add_parser(
        "train", help="train a model with an RL algorithm, evaluate before/after, save it",
        usage="text-envs train [-h] [--config FILE] [--env ID] [--algo NAME] [--steps N] [--out DIR] [options]",
        description="Train a model on a text env with an RL algorithm (default: PPO on TextContinuation-v0 from\n"
                    "the shipped warm-started tiny T5), evaluate it before and after on held-out prompts, and save\n"
                    "it, its results and its learning curve in --out.",
        epilog=TRAIN_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    train.add_argument("--config", metavar="FILE", help="a JSON or TOML file of train options (flags override it)")
    _add_config_flags(train, groups=TRAIN_GROUPS)
    train.set_defaults(func=_train)

    ev = sub.add_parser(
        "eval", help="evaluate a saved model (or the shipped one), optionally on your own data file",
        usage="text-envs eval [-h] [MODEL] [--dataset FILE --prompt-field F] [--out DIR] [options]",
        description="Evaluate a saved model and print its metric table. Without options it evaluates a run on the\n"
                    "run's own test split; --dataset FILE --prompt-field F [--reference-field R] evaluates it on\n"
                    "every row of your file. The env and data options default to the run's own (its config.json),\n"
                    "else to those of text-envs train. --out DIR writes results.md, results.json and\n"
                    "generations.jsonl (one line per text: prompt, generation, reference, every metric).",
        epilog="examples:\n"
               "  text-envs eval runs/first                        # a run, on its own test split\n"
               "  text-envs eval runs/first --dataset my.jsonl --prompt-field text --out runs/first-eval\n"
               "  text-envs eval --env TextCopy-v0 --examples 20    # the shipped model",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    ev.add_argument("model_path", nargs="?", metavar="MODEL",
                    help="a `text-envs train` output folder, an SB3 .zip, or a Hugging Face model folder (a run's "
                         "hf/) or hub name; default: the shipped model")
    _add_config_flags(ev, only=("env", "dataset", "prompt_field", "reference_field", "source_lang", "target_lang",
                                "gym_kwargs", "reward", "max_new_tokens", "difficulty", "seed", "device",
                                "trust_remote_code"),
                      helps=EVAL_HELP)
    ev.add_argument("--split", dest="eval_split", choices=("train", "validation", "test", "ood"),
                    default=argparse.SUPPRESS, help="the split to evaluate; ood: TextContinuation-v0's openings "
                    "worded unlike the training generator's (default: test)")
    ev.add_argument("--decoding", dest="eval_decoding", choices=("greedy", "sampled", "best-of-n"),
                    default=argparse.SUPPRESS, help="greedy, sampled (one text per prompt, seeded by --seed) or "
                    "best-of-n (the highest-reward of --n samples per prompt; the table adds its KL bound to the "
                    "sampling policy, log n - (n-1)/n) (default: the run's env's: sampled for TextContinuation-v0, "
                    "else greedy)")
    ev.add_argument("--n", dest="best_of_n", type=int, default=argparse.SUPPRESS, metavar="N",
                    help="samples per prompt of --decoding best-of-n (default: 4)")
    ev.add_argument("--examples", dest="eval_examples", type=int, default=argparse.SUPPRESS, metavar="N",
                    help="evaluate the first N examples of the split (default: 200)")
    ev.add_argument("--out", default=None, metavar="DIR",
                    help="write results.md, results.json and generations.jsonl to DIR (refused if it exists)")
    ev.add_argument("--overwrite", action="store_true", help="replace an existing --out folder")
    ev.set_defaults(func=_eval)

    from text_envs_app.bench import ALL_METHODS, BENCH_PRESETS

    bench = sub.add_parser(
        "bench", help="run several algorithms on the same tasks, seeds and token budget (IQM and 95%% CIs)",
        description="Train every method from the shipped model on a preset's tasks with the same seeds and budget "
                    "in generated tokens, evaluate each on the test split, and write results.md (interquartile "
                    "mean over seeds with 95% stratified bootstrap confidence intervals), results.csv (one row "
                    "per run), curves.csv, results.png, frontier.png (reward against KL to the start, with the "
                    "optimum curve and best-of-n on the rl-* and hack presets) and curves.png (greedy reward on fixed "
                    "validation prompts against generated tokens). The rl-* and hack presets score every row on 8 "
                    "(hack: 4) sampled texts per prompt and compare each trained method, seed by seed, with the best non-RL "
                    "baseline (paired 95% CI, probability of improvement).")
    bench.add_argument("--preset", default="rl-small", choices=tuple(BENCH_PRESETS),
                       help="rl-small: TextContinuation-v0 (sentiment), the start model, best-of-n, filtered "
                            "supervised and every RL method but trpo, 10 seeds, 1,000 test prompts x 8 samples "
                            "(1 h 40 min on 2 CPU cores in two parts: --first-seed); rl-full: it and "
                            "TextSummarization-v0 with noisy "
                            "references (0.5*rouge-l+0.5*fact-precision), every method, 3 KL coefficients, 4x the "
                            "budget; hack: KL coefficients 0 and 0.01 for 10x rl-small's tokens, where the hacking "
                            "metrics flag degenerate texts; main-job: the main job's recipe (RLOO, beta 0.5, "
                            "122,880 tokens) against the start model, best-of-n and RAFT, 10 seeds, 1,000 prompts x "
                            "8 samples (about 30 minutes on 2 CPU cores in two parts); small/full: the first presets "
                            "(summarization against its "
                            "references, 3 seeds) (default: rl-small)")
    bench.add_argument("--seeds", type=int, default=None, metavar="N",
                       help="seeds 0..N-1 (default: the preset's: 10 for rl-small, rl-full and main-job, 3 for hack, small "
                            "and full)")
    bench.add_argument("--first-seed", type=int, default=0, metavar="K",
                       help="the first seed: seeds K..K+N-1 with --seeds N, to run a bench in parts (processes or "
                            "machines, each its own --out) that text-envs bench-merge joins (default: 0)")
    bench.add_argument("--kl-coefs", type=_kl_coefs, default=None, metavar="B1,B2,...",
                       help="the RL methods' KL coefficients to the start model, one run each; two or more draw "
                            "the reward/KL frontier (default: the preset's: 0.05 for rl-small, 0.01,0.05,0.2 for "
                            "rl-full, 0,0.01 for hack, 0.5 for main-job, 0.02 for small/full)")
    bench.add_argument("--device", default="cpu", help="torch device of every run: cpu, cuda, or auto (default: cpu)")
    bench.add_argument("--steps", type=int, default=None, metavar="N",
                       help="generated tokens per training run instead of the preset's (a shorter or longer bench)")
    bench.add_argument("--eval-examples", type=int, default=None, metavar="N",
                       help="test prompts evaluated instead of the preset's")
    bench.add_argument("--out", default="runs/bench", help="output folder (default: runs/bench)")
    bench.add_argument("--overwrite", action="store_true", help="replace an existing --out folder")
    bench.add_argument("--methods", default=None,
                       help=f"comma-separated subset of {','.join(ALL_METHODS)} (default: the preset's: all of "
                            "them on rl-full; all but trpo and supervised on rl-small (trpo is 5x slower than ppo); "
                            "greedy, sampled, supervised, ppo, a2c and nlpo on small and full; best-of-n needs a "
                            "preset with sampled evaluation, supervised-filtered a task with a reward threshold)")
    bench.add_argument("--model", default=None,
                       help="grue-imdb: the policy instead of lvwerra/gpt2-imdb (a hub name or a save_pretrained folder)")
    bench.add_argument("--reward-model", default=None,
                       help="grue-imdb: the sentiment classifier instead of lvwerra/distilbert-imdb (label 1 = positive)")
    bench.add_argument("--dataset", default=None,
                       help="grue-imdb: the reviews instead of the hub's imdb (a local .jsonl/.csv file with a text "
                            "column, split 80/10/10)")
    bench.set_defaults(func=_bench)
    merge = sub.add_parser(
        "bench-merge", help="join the folders of a bench run in parts (bench --first-seed) into one",
        description="Join the --out folders of a bench run in parts (text-envs bench --first-seed K --seeds N, one "
                    "part per process or machine) into one folder with the files a single bench over every seed "
                    "writes: the rows, the start model's samples of every seed, gain_share_pooled against them, "
                    "results.md and the plots over all seeds. The parts must share the preset, methods, KL "
                    "coefficients and overrides, and run different seeds.")
    merge.add_argument("parts", nargs="+", metavar="PART", help="a finished bench folder (two or more)")
    merge.add_argument("--out", required=True, help="the joined bench folder")
    merge.add_argument("--overwrite", action="store_true", help="replace an existing --out folder")
    merge.set_defaults(func=_bench_merge)
    from text_envs_app.frontier import add_frontier_command

    add_frontier_command(sub, _add_config_flags, _config_values)

    demo = sub.add_parser("demo", help="run one episode of each registered env and print it")
    demo.add_argument("--env", action="append", choices=sorted(text_envs.ENV_IDS), metavar="ID",
                      help=f"env id, repeatable: {', '.join(sorted(text_envs.ENV_IDS))} (default: every env)")
    demo.add_argument("--seed", type=int, default=0, help="seeds each episode's prompt and the random policy "
                      "(default: 0)")
    demo.set_defaults(func=_demo)
    return parser


def _quiet_libraries() -> None:
    """Keep the command's output to its own lines: no transformers "Loading weights" / "Writing model shards"
    bars, no hub download bars, no library deprecation warnings (their advice is for library authors)."""
    # OpenMP threads that wait by spinning burn the cores other work needs (docs/guides/performance.md); read when
    # torch is first imported, so it is set here, before any command imports it
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    for category in (DeprecationWarning, FutureWarning, PendingDeprecationWarning):
        warnings.filterwarnings("ignore", category=category)
    if "transformers" in sys.modules:  # imported before main() ran (in-process use): switch it off directly
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()


def main(argv: Sequence[str] | None = None) -> int:
    """The ``text-envs`` command: returns the exit status (2 for bad input, with one clear line on stderr)."""
    _quiet_libraries()
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except text_envs.errors.TextEnvsError as exc:  # bad input: one clear line, no traceback
        print(f"text-envs: error: {exc}{_flag_hint(str(exc))}", file=sys.stderr)
        return 2


_KWARG_FLAGS = {"prompt_field": "--prompt-field", "reference_field": "--reference-field",
                "source_lang": "--source-lang", "target_lang": "--target-lang"}


def _flag_hint(message: str) -> str:
    """The library's errors name gym.make keywords (``prompt_field=...``); name the command's flags too."""
    flags = [flag for name, flag in _KWARG_FLAGS.items() if f"{name}=" in message and flag not in message]
    return f" (on the command line: {', '.join(flags)}; any other keyword: --env-kwarg KEY=VALUE)" if flags else ""


if __name__ == "__main__":
    sys.exit(main())
