"""text_envs_app: the application layer of text-envs (the ``text-envs`` command: train, eval, bench, demo).

It sits above both the environments (:mod:`text_envs`, which imports no training code) and the engine adapters
(:mod:`sb3_ext`); nothing below imports it. :mod:`text_envs_app.config` holds :class:`TrainConfig`,
:mod:`text_envs_app.train` and :mod:`text_envs_app.eval_job` the jobs (with :mod:`text_envs_app.evaluation`,
:mod:`text_envs_app.run_folder` and :mod:`text_envs_app.engines`), :mod:`text_envs_app.cli` the command line generated
from the config.
"""
