"""The ``text-envs`` command line.

    text-envs train [--env ID] [--algo ppo|a2c|trpo|nlpo] [--steps N] [--out DIR] ...   train, evaluate, save
    text-envs train --engine rllib [--algo ppo|impala|appo] [--num-env-runners N]      the same on Ray RLlib
    text-envs eval [MODEL] [--dataset FILE --prompt-field F] [--out DIR]                 a saved model's metrics
    text-envs bench [--preset small|rl-small] [--kl-coefs 0.01,0.05]                   algorithms side by side
    text-envs demo [--env ID ...] [--seed N]                                            one episode of each env

Every ``train`` option is a field of :class:`text_envs_app.experiment.TrainConfig`; ``--config FILE`` (JSON or
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
                script = [int(t) for t in env.unwrapped._target]
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


def _add_config_flags(parser: argparse.ArgumentParser, only: Sequence[str] | None = None,
                      helps: dict[str, str] | None = None) -> None:
    """One flag per TrainConfig field, help text from the field's docstring (CleanRL-style); ``only`` picks
    fields (in that order), ``helps`` replaces help texts."""
    from text_envs_app.experiment import TrainConfig, field_docs

    docs = {**field_docs(), **(helps or {})}
    hints = typing.get_type_hints(TrainConfig)
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    for name in only if only is not None else list(fields):
        f = fields[name]
        default = f.default if f.default is not dataclasses.MISSING else None
        help_text = docs.get(f.name, "") if f.name in (helps or {}) else f"{docs.get(f.name, '')} (default: {default})"
        help_text = help_text.replace("%", "%%")  # argparse %-formats help texts ("the first 10%")
        if f.name == "gym_kwargs":
            parser.add_argument("--env-kwargs", dest="gym_kwargs", type=_json_object, default=argparse.SUPPRESS,
                                metavar="JSON", help=docs["gym_kwargs"].replace("%", "%%"))
            parser.add_argument("--env-kwarg", dest="env_kwarg", type=_key_value, action="append", default=[],
                                metavar="KEY=VALUE", help="one gym.make keyword (repeatable); VALUE is read as JSON "
                                "when it is JSON (128, true, \"x\"), else as text")
            continue
        flag = "--" + f.name.replace("_", "-")
        if hints[f.name] is bool:
            parser.add_argument(flag, action="store_true", default=argparse.SUPPRESS, help=help_text)
            continue
        kind = typing.get_args(hints[f.name]) or (hints[f.name],)
        kind = next(k for k in kind if k is not type(None))
        parser.add_argument(flag, type=kind, default=argparse.SUPPRESS, metavar=f.name.upper(), help=help_text)


def _config_values(args: argparse.Namespace, base: dict | None = None) -> dict:
    """TrainConfig values: ``base`` (a run's), then the --config file, then the flags given; --env-kwarg pairs
    go on top of --env-kwargs."""
    from text_envs_app.experiment import TrainConfig, load_config_file

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
    from text_envs_app.experiment import TrainConfig

    return TrainConfig(**_config_values(args))


def _train(args: argparse.Namespace) -> int:
    from text_envs_app.experiment import train

    result = train(_config(args))
    return 130 if result.get("interrupted") else 0


_DATA_CHOICE_KEYS = ("dataset", "train_file", "validation_file", "test_file", "split_seed")


def _eval(args: argparse.Namespace) -> int:
    from text_envs.data.sources import is_local_path
    from text_envs_app.experiment import RUN_DATA_KEYS, TrainConfig, evaluate_saved, find_saved_model

    found = find_saved_model(args.model_path)
    run = {k: v for k, v in found["run"].items() if k in RUN_DATA_KEYS}
    for key in ("algo", "engine"):  # an RLlib run's algo (impala, appo) is valid with its engine only
        if found["run"].get(key):
            run[key] = found["run"][key]
    given = vars(args)  # the namespace itself: a file popped here is not read again as --dataset below
    if "dataset" in given:  # the user's own data replaces the run's: every row of a file is evaluated
        run = {k: v for k, v in run.items() if k not in _DATA_CHOICE_KEYS}
        if is_local_path(given["dataset"]):
            f = given.pop("dataset")
            run.update(train_file=f, validation_file=f, test_file=f)
    values = _config_values(args, run)
    out = values.pop("out", None)  # eval's own --out (results, not a training run)
    evaluate_saved(args.model_path, TrainConfig(**values), out=out, overwrite=args.overwrite)
    return 0


def _bench(args: argparse.Namespace) -> int:
    from text_envs_app.bench import run_benchmark

    methods = [m.strip() for m in args.methods.split(",") if m.strip()] if args.methods else None
    run_benchmark(args.preset, args.out, seeds=args.seeds, overwrite=args.overwrite, methods=methods,
                  kl_coefs=args.kl_coefs, device=args.device)
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
    "env": "the registered env id (default: the run's, else TextSummarization-v0)",
    "dataset": "the data to evaluate on: a local .jsonl/.json/.csv file (every row of it is evaluated) or a hub "
               "name; default: the run's own evaluation split (the same seeded split of its file), else the "
               "embedded data",
    "eval_examples": "evaluate the first N examples of the split",
    "device": "torch device: cpu, cuda, or auto",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="text-envs", description="Text generation as reinforcement learning.")
    parser.add_argument("--version", action="version", version=f"text-envs {text_envs.__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = sub.add_parser("train", help="train a model with an RL algorithm, evaluate before/after, save it")
    train.add_argument("--config", help="a JSON or TOML file of train options (flags override it)")
    _add_config_flags(train)
    train.set_defaults(func=_train)

    ev = sub.add_parser(
        "eval", help="evaluate a saved model (or the shipped one) greedily, optionally on your own data file",
        description="Evaluate a saved model greedily and print its metric table. Without options it evaluates a "
                    "run on the run's own test split; --dataset FILE --prompt-field F [--reference-field R] "
                    "evaluates it on every row of your file. --out DIR writes results.md, results.json and "
                    "generations.jsonl (one line per text: prompt, generation, reference, every metric).")
    ev.add_argument("model_path", nargs="?", metavar="MODEL",
                    help="a `text-envs train` output folder, an SB3 .zip, or a Hugging Face model folder (a run's "
                         "hf/) or hub name; default: the shipped model")
    _add_config_flags(ev, only=("env", "dataset", "prompt_field", "reference_field", "source_lang", "target_lang",
                                "gym_kwargs", "reward", "max_new_tokens", "difficulty", "seed", "device"),
                      helps=EVAL_HELP)
    ev.add_argument("--split", dest="eval_split", choices=("train", "validation", "test"), default=argparse.SUPPRESS,
                    help="the split to evaluate (default: test)")
    ev.add_argument("--examples", dest="eval_examples", type=int, default=argparse.SUPPRESS, metavar="N",
                    help="evaluate the first N examples of the split (default: 200)")
    ev.add_argument("--out", default=None, metavar="DIR",
                    help="write results.md, results.json and generations.jsonl to DIR (refused if it exists)")
    ev.add_argument("--overwrite", action="store_true", help="replace an existing --out folder")
    ev.set_defaults(func=_eval)

    from text_envs_app.bench import BENCH_METHODS, BENCH_PRESETS

    bench = sub.add_parser(
        "bench", help="run several algorithms on the same tasks, seeds and token budget (IQM and 95%% CIs)",
        description="Train every method from the shipped model on a preset's tasks with the same seeds and budget "
                    "in generated tokens, evaluate each on the test split, and write results.md (interquartile "
                    "mean over seeds with 95% stratified bootstrap confidence intervals), results.csv (one row "
                    "per run), curves.csv, results.png, frontier.png (reward against KL to the start) and "
                    "curves.png (greedy reward on fixed validation prompts against generated tokens).")
    bench.add_argument("--preset", default="rl-small", choices=tuple(BENCH_PRESETS),
                       help="rl-small: TextContinuation-v0 (sentiment), every method but trpo, 5 seeds (under 30 "
                            "min on 2 CPU cores); rl-full: it and TextSummarization-v0 with noisy references "
                            "(0.5*rouge-l+0.5*fact-precision), 10 seeds, 3 KL coefficients, 4x the budget (a GPU "
                            "or a long run); small/full: the first presets (summarization against its references, "
                            "3 seeds) (default: rl-small)")
    bench.add_argument("--seeds", type=int, default=None, metavar="N",
                       help="seeds 0..N-1 (default: the preset's: 5 for rl-small, 10 for rl-full, 3 for small/full)")
    bench.add_argument("--kl-coefs", type=_kl_coefs, default=None, metavar="B1,B2,...",
                       help="the RL methods' KL coefficients to the start model, one run each; two or more draw "
                            "the reward/KL frontier (default: the preset's: 0.05 for rl-small, 0.01,0.05,0.2 for "
                            "rl-full, 0.02 for small/full)")
    bench.add_argument("--device", default="cpu", help="torch device of every run: cpu, cuda, or auto (default: cpu)")
    bench.add_argument("--out", default="runs/bench", help="output folder (default: runs/bench)")
    bench.add_argument("--overwrite", action="store_true", help="replace an existing --out folder")
    bench.add_argument("--methods", default=None,
                       help=f"comma-separated subset of {','.join(BENCH_METHODS)} (default: the preset's: all of "
                            "them on rl-full; all but trpo, 5x slower than ppo, on rl-small, small and full)")
    bench.set_defaults(func=_bench)

    demo = sub.add_parser("demo", help="run one episode of each registered env and print it")
    demo.add_argument("--env", action="append", choices=sorted(text_envs.ENV_IDS), help="env id (repeatable)")
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(func=_demo)
    return parser


def _quiet_libraries() -> None:
    """Keep the command's output to its own lines: no transformers "Loading weights" / "Writing model shards"
    bars, no hub download bars, no library deprecation warnings (their advice is for library authors)."""
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
