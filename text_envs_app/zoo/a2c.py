"""rl-zoo3 hyperparameters of A2C for every registered env: ``--algo a2c --conf-file text_envs_app.zoo.a2c``
(:func:`text_envs_app.zoo.zoo_hyperparams`)."""

from text_envs_app.zoo import zoo_hyperparams

hyperparams = zoo_hyperparams("a2c")
