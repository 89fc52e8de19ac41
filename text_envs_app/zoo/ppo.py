"""rl-zoo3 hyperparameters of PPO for every registered env: ``--algo ppo --conf-file text_envs_app.zoo.ppo``
(:func:`text_envs_app.zoo.zoo_hyperparams`)."""

from text_envs_app.zoo import zoo_hyperparams

hyperparams = zoo_hyperparams("ppo")
