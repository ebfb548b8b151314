"""Policy files and runs read into one :class:`LoadedPolicy`: a jittable ``(x, state) -> (actions, state)``.

:func:`load_policy` reads any source a user points at: a run directory of ``experiments/train.py`` or one of its
checkpoints (:mod:`~agile_jax.policies.run`), our ``policy.onnx`` / ``policy.pt`` exports and RSL-RL's ONNX
(:mod:`~agile_jax.policies.load`), and RSL-RL ``model_<it>.pt`` checkpoints, MLP, RNN or CNN
(:mod:`~agile_jax.policies.rsl_rl_checkpoint`). Distillation, TPPO and AMP read their teachers through it (the
``load_policy`` of :class:`agile_jax.extensions.method.BuildContext`), and so does ``experiments/baseline.py``.

:func:`read_weights` reads the same kinds of source (our runs, RSL-RL checkpoints, our MLP exports) into network
weights instead, checked against a run's networks: ``runner.init_from`` starts a run from them
(:mod:`~agile_jax.policies.weights`).
"""

from agile_jax.policies.load import load_policy
from agile_jax.policies.loaded import LoadedPolicy
from agile_jax.policies.weights import read_weights

__all__ = ["LoadedPolicy", "load_policy", "read_weights"]
