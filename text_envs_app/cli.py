"""The ``text-envs`` command line.

    text-envs train [--env ID] [--algo ppo|a2c|trpo|nlpo] [--steps N] [--out DIR] ...   train, evaluate, save
    text-envs eval [MODEL] [--env ID] [--split test]                                     metric table of a model
    text-envs bench [--preset small]                                                    algorithms side by side
    text-envs demo [--env ID ...] [--seed N]                                            one episode of each env

Every ``train`` option is a field of :class:`text_envs_app.experiment.TrainConfig`; ``--config FILE`` (JSON or
TOML) may hold them, and flags given on the command line win.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import typing
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


def _add_config_flags(parser: argparse.ArgumentParser, only: Sequence[str] | None = None) -> None:
    """One flag per TrainConfig field, help text from the field's docstring (CleanRL-style)."""
    from text_envs_app.experiment import TrainConfig, field_docs

    docs = field_docs()
    hints = typing.get_type_hints(TrainConfig)
    for f in dataclasses.fields(TrainConfig):
        if only is not None and f.name not in only:
            continue
        flag = "--" + f.name.replace("_", "-")
        help_text = f"{docs.get(f.name, '')} (default: {f.default})"
        if hints[f.name] is bool:
            parser.add_argument(flag, action="store_true", default=argparse.SUPPRESS, help=help_text)
            continue
        kind = typing.get_args(hints[f.name]) or (hints[f.name],)
        kind = next(k for k in kind if k is not type(None))
        parser.add_argument(flag, type=kind, default=argparse.SUPPRESS, metavar=f.name.upper(), help=help_text)


def _config(args: argparse.Namespace):
    from text_envs_app.experiment import TrainConfig, load_config_file

    values = load_config_file(args.config) if getattr(args, "config", None) else {}
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    values.update({k: v for k, v in vars(args).items() if k in names})
    return TrainConfig(**values)


def _train(args: argparse.Namespace) -> int:
    from text_envs_app.experiment import train

    result = train(_config(args))
    return 130 if result.get("interrupted") else 0


def _eval(args: argparse.Namespace) -> int:
    from text_envs_app.experiment import evaluate_saved

    evaluate_saved(args.model_path, _config(args))
    return 0


def _bench(args: argparse.Namespace) -> int:
    from text_envs_app.experiment import run_benchmark

    methods = [m.strip() for m in args.methods.split(",") if m.strip()] if args.methods else None
    run_benchmark(args.preset, args.out, seeds=args.seeds, overwrite=args.overwrite, methods=methods)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="text-envs", description="Text generation as reinforcement learning.")
    parser.add_argument("--version", action="version", version=f"text-envs {text_envs.__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = sub.add_parser("train", help="train a model with an RL algorithm, evaluate before/after, save it")
    train.add_argument("--config", help="a JSON or TOML file of train options (flags override it)")
    _add_config_flags(train)
    train.set_defaults(func=_train)

    ev = sub.add_parser("eval", help="the metric table of a saved model on a split")
    ev.add_argument("model_path", nargs="?", metavar="MODEL",
                    help="an SB3 .zip or a `text-envs train` output folder; default: the shipped model")
    ev.add_argument("--split", dest="eval_split", choices=("train", "validation", "test"), default=argparse.SUPPRESS)
    _add_config_flags(ev, only=("env", "algo", "model", "dataset", "reward", "seed", "device", "max_new_tokens",
                                "eval_examples"))
    ev.set_defaults(func=_eval)

    bench = sub.add_parser("bench", help="run several algorithms on the same envs, seeds and token budget")
    bench.add_argument("--preset", default="small", choices=("small", "full"))
    bench.add_argument("--seeds", type=int, default=3)
    bench.add_argument("--out", default="runs/bench")
    bench.add_argument("--overwrite", action="store_true")
    bench.add_argument("--methods", default=None,
                       help="comma-separated subset of greedy,sampled,supervised,ppo,a2c,trpo,nlpo (default: the "
                            "preset's: all but trpo on the text tasks, whose memory it exhausts)")
    bench.set_defaults(func=_bench)

    demo = sub.add_parser("demo", help="run one episode of each registered env and print it")
    demo.add_argument("--env", action="append", choices=sorted(text_envs.ENV_IDS), help="env id (repeatable)")
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(func=_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except text_envs.errors.TextEnvsError as exc:  # bad input: one clear line, no traceback
        print(f"text-envs: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
