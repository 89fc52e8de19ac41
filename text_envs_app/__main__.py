"""``python -m text_envs_app ...`` is the ``text-envs`` command."""

from text_envs_app.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
