"""``python -m text_envs ...`` runs the ``text-envs`` command.

An entry script only: the library never imports this module, so :mod:`text_envs` still imports no training
code; the command itself lives in the application layer above the adapters (:mod:`text_envs_app`).
"""

if __name__ == "__main__":
    import runpy

    runpy.run_module("text_envs_app", run_name="__main__", alter_sys=True)
