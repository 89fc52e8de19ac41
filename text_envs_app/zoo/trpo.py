"""rl-zoo3 hyperparameters of TRPO for every registered env: ``--algo trpo --conf-file text_envs_app.zoo.trpo``
(:func:`text_envs_app.zoo.zoo_hyperparams`)."""

from text_envs_app.zoo import zoo_hyperparams

hyperparams = zoo_hyperparams("trpo")
