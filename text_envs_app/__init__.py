"""text_envs_app: the application layer of text-envs (the ``text-envs`` command: train, eval, bench, demo).

It sits above both the environments (:mod:`text_envs`, which imports no training code) and the engine adapters
(:mod:`sb3_ext`); nothing below imports it. :mod:`text_envs_app.experiment` holds :class:`TrainConfig` and the
jobs, :mod:`text_envs_app.cli` the command line generated from it.
"""
