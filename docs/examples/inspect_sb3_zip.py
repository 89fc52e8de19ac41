"""Look inside an SB3 zip before loading it: which `data` entries are pickles, and its weights read as data."""

import json
import sys
import zipfile

from text_envs_app.checkpoint import read_sb3_policy_weights

path = sys.argv[1] if len(sys.argv) > 1 else "runs/train/model.zip"
with zipfile.ZipFile(path) as zf:
    print(zf.namelist())  # data, policy.pth, policy.optimizer.pth, pytorch_variables.pth, ...
    data = json.loads(zf.read("data"))
# each value with a ":serialized:" key is a base64 pickle that PPO.load would unpickle, running its code
pickled = {key: value.get(":type:") for key, value in data.items() if isinstance(value, dict) and ":serialized:" in value}
print("pickled entries:", pickled)

# the weights alone, as data: policy.pth through torch.load(weights_only=True); nothing of `data` is read
state_dict = read_sb3_policy_weights(path)
print(f"{len(state_dict)} entries in the policy's state dict")
# then: an sb3_ext.LLMPolicy built with the run's settings, policy.load_state_dict(state_dict)
