"""The training engines of ``text-envs train``: :mod:`text_envs_app.engines.sb3` builds the Stable-Baselines3 model,
its envs and callbacks; the Ray RLlib run is :mod:`text_envs_app.rllib_train`."""
