"""The training engines of ``text-envs train`` behind one protocol (:mod:`text_envs_app.engines.base`):
:mod:`text_envs_app.engines.sb3` (Stable-Baselines3, in this process) and :mod:`text_envs_app.engines.rllib`
(Ray RLlib). The skeleton that runs either is :func:`text_envs_app.train.train_unlocked`."""
