"""The ``text-envs`` command line.

    text-envs demo [--env ID ...] [--seed N]    one episode of each env, printed
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import text_envs


def _demo(args: argparse.Namespace) -> int:
    """Run one episode per env twice: a random policy, then a policy that types the reference."""
    import gymnasium as gym

    for env_id in args.env or sorted(text_envs.ENV_IDS):
        env = gym.make(env_id, render_mode="ansi")
        print(f"=== {env_id}  action space {env.action_space}, prompt {env.unwrapped.max_prompt_tokens} tokens, "
              f"budget {env.unwrapped.max_new_tokens} tokens")
        for policy in ("random", "reference"):
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
                action = env.action_space.sample() if policy == "random" else script[min(t, len(script) - 1)]
                obs, reward, done, truncated, info = env.step(action)
                total += reward
                t += 1
                done = done or truncated
            print(f"--- {policy} policy: return {total:.3f}")
            print(env.render())
        print()
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="text-envs", description="Text generation as reinforcement learning.")
    parser.add_argument("--version", action="version", version=f"text-envs {text_envs.__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    demo = sub.add_parser("demo", help="run one episode of each registered env and print it")
    demo.add_argument("--env", action="append", choices=sorted(text_envs.ENV_IDS), help="env id (repeatable)")
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(func=_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
