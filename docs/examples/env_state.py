import gymnasium as gym

import text_envs  # noqa: F401  (registers the envs)
from text_envs.state import Stateful
from text_envs_app.state_codec import dumps, loads

env = gym.make("TextCopy-v0").unwrapped
env.reset(seed=0)
env.step(3)  # an episode in progress
files = dumps(env.get_state())  # {"state.json": ..., "arrays.npz": ...}: data, no pickle

fresh = gym.make("TextCopy-v0").unwrapped  # built with the same arguments
fresh.set_state(loads(files))
assert isinstance(fresh, Stateful)
print(fresh.step(4)[1:3] == env.step(4)[1:3])  # the same episode goes on: same reward, same end
