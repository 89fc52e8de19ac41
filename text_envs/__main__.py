"""``python -m text_envs ...`` is the ``text-envs`` command."""

from text_envs.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
