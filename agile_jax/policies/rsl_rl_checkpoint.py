"""An RSL-RL 5.x checkpoint (``model_<it>.pt``) as a distillation / TPPO teacher.

RSL-RL's ``Distillation.load`` takes the teacher from a checkpoint's ``teacher_state_dict`` (a distillation run)
or ``actor_state_dict`` (a PPO run); so does :func:`from_rsl_rl_checkpoint`. ``MLPModel`` and
``RNNModel`` (LSTM / GRU) teachers are read, with their observation normaliser, as the deterministic Gaussian
mean (the mean half of a heteroscedastic actor). A ``CNNModel`` teacher needs its ``cnn_cfg`` (strides, paddings
and pooling are not in the file) and is built when it is bound to the env's observation groups, whose shapes it
then reads. The activation and ``cnn_cfg`` come from an Isaac Lab ``params/agent.yaml`` beside the checkpoint
(section ``teacher``, else ``actor``), else from the caller, else (activation) RSL-RL's default ``elu``.
"""

from __future__ import annotations

import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp

from agile_jax.export import rsl_rl
from agile_jax.export.rsl_rl_models import ModelLayout, read_model
from agile_jax.networks.actor_critic import ActorCritic
from agile_jax.networks.records import ActorParams
from agile_jax.networks.recurrent import make_actor_critic
from agile_jax.policies.loaded import LoadedPolicy, file_sha256

TEACHER_KEYS = ("teacher_state_dict", "actor_state_dict")  # RSL-RL's order (Distillation.load)


def is_torchscript(path: str) -> bool:
    """Whether ``path`` is a TorchScript archive (it holds ``constants.pkl``); ``torch.save`` files do not."""
    try:
        with zipfile.ZipFile(path) as archive:
            return any(name.endswith("/constants.pkl") or name == "constants.pkl" for name in archive.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def is_rsl_rl_checkpoint(path: str) -> bool:
    """Whether ``path`` is a ``torch.save`` archive rather than an ONNX or TorchScript policy."""
    return zipfile.is_zipfile(path) and not is_torchscript(path) and not path.lower().endswith(".onnx")


def teacher_networks(layout: ModelLayout, activation: str) -> ActorCritic:
    """An actor-critic whose actor is the teacher (input: one group ``obs`` of the concatenated observation)."""
    fields = dict(obs_shapes={"obs": (layout.input_dim,)}, obs_groups={"actor": ["obs"], "critic": ["obs"]},
                  action_size=layout.output_dim, actor_hidden_dims=layout.hidden_dims, critic_hidden_dims=(),
                  activation=activation, noise_std_type=layout.std_type or "scalar",
                  actor_obs_normalization=layout.normalized, distribution_class=layout.distribution_class)
    return make_actor_critic(layout.rnn_type, layout.rnn_hidden_dim, layout.rnn_num_layers, **fields)


@dataclass(frozen=True)
class CNNCheckpointPolicy(LoadedPolicy):
    """A ``CNNModel`` teacher: its network is built by :meth:`bind` from the env's group shapes and ``cnn_cfg``
    (``obs_dim`` is -1 until then: the flat width depends on the image sizes).

    Attributes:
        state_dict: the teacher's model state dict.
        cnn_cfg: RSL-RL ``cnn_cfg`` of its encoders (one for every 2-D group, or per group).
        layout: what the state dict says about the network.
    """

    state_dict: Any = None
    cnn_cfg: Any = None
    layout: ModelLayout | None = None

    def bind(self, obs_groups: Sequence[str], obs_shapes: Mapping[str, tuple[int, ...]]):
        """``teacher(obs, ()) -> (actions, ())`` on the groups ``obs_groups`` of an env (images ``[C, H, W]``).

        Raises:
            ValueError: the groups or ``cnn_cfg`` do not give the checkpoint's shapes (the entry is named).
        """
        from agile_jax.export.rsl_rl_models import mlp_from_state_dict, normalizer_from_state_dict
        from agile_jax.networks.cnn_actor_critic import encoders_from_state_dict, make_actor_critic_cnn

        layout = self.layout
        net = make_actor_critic_cnn(self.cnn_cfg, allow_batch_norm=True, obs_shapes=dict(obs_shapes),
                                    obs_groups={"actor": list(obs_groups), "critic": list(obs_groups)},
                                    action_size=layout.output_dim, actor_hidden_dims=layout.hidden_dims,
                                    critic_hidden_dims=(), activation=self.description["activation"],
                                    actor_obs_normalization=layout.normalized,
                                    distribution_class=layout.distribution_class)
        if net.latent_dim("actor") != layout.input_dim:
            raise ValueError(f"the teacher '{self.source}' reads {layout.input_dim} features, the groups "
                             f"{list(obs_groups)} give {net.latent_dim('actor')}; set runner.obs_groups.teacher to "
                             "the groups it was trained on")
        params = ActorParams(actor={"mlp": mlp_from_state_dict(self.state_dict, "teacher"),
                                    "cnns": encoders_from_state_dict(self.state_dict, net.actor_encoders)})
        params = jax.tree.map(jnp.asarray, params)
        normalizer = normalizer_from_state_dict(self.state_dict)
        normalizers = {"actor": jax.tree.map(jnp.asarray, normalizer)} if normalizer is not None else {}
        return lambda obs, state: (net.actor_mean(params, normalizers, obs), state)


def _unbound(x, state):
    raise TypeError("a CNNModel teacher reads observation groups, not a flat vector: use teacher.bind(groups, shapes)")


def _cnn_teacher(path: str, sd: Mapping, layout: ModelLayout, activation: str, cnn_cfg: Any) -> CNNCheckpointPolicy:
    if not cnn_cfg:
        raise ValueError(f"teacher '{path}' is a CNNModel, whose strides, paddings and pooling the file does not "
                         "store: put the run's params/agent.yaml (with the model's cnn_cfg) beside it")
    description = {"format": "rsl_rl_checkpoint", "model": "CNNModel", "hidden_dims": list(layout.hidden_dims),
                   "activation": activation, "normalizer": layout.normalized, "cnn_cfg": cnn_cfg}
    return CNNCheckpointPolicy(apply=_unbound, init_state=lambda num_envs: (), obs_dim=-1,
                                action_dim=layout.output_dim, source=path, sha256=file_sha256(path),
                                description=description, state_dict=sd, cnn_cfg=cnn_cfg, layout=layout)


def from_rsl_rl_checkpoint(path: str, activation: str | None = None, cnn_cfg: Any = None) -> LoadedPolicy:
    """A :class:`LoadedPolicy` from an RSL-RL checkpoint file (``x [N, D] -> mean actions [N, A]``).

    Args:
        path: ``model_<it>.pt`` of an RSL-RL PPO or distillation run.
        activation: RSL-RL activation name (default: ``params/agent.yaml`` beside the file, else ``elu``).
        cnn_cfg: a ``CNNModel`` teacher's RSL-RL ``cnn_cfg`` (default: ``params/agent.yaml`` beside the file).

    Raises:
        FileNotFoundError: no such file.
        ValueError: not an RSL-RL checkpoint, no teacher in it, or a model kind that cannot be read (one line).
    """
    checkpoint = rsl_rl.read_file(path)
    key = next((k for k in TEACHER_KEYS if checkpoint.get(k)), None)
    if key is None:
        raise ValueError(f"'{path}' has neither a teacher_state_dict nor an actor_state_dict (keys: "
                         f"{sorted(checkpoint)}); pass a model_<iteration>.pt of an RSL-RL PPO or distillation run")
    layout, params, normalizer = read_model(checkpoint[key], f"teacher '{path}'", actor=True)
    section = ("teacher", "actor") if key == "teacher_state_dict" else ("actor", "policy")
    model_cfg = rsl_rl.model_cfg_from_run_dir(path, section)
    activation = rsl_rl.import_activation(str(activation or model_cfg.get("activation") or "elu"))
    if layout.class_name == "CNNModel":
        return _cnn_teacher(path, checkpoint[key], layout, activation, cnn_cfg or model_cfg.get("cnn_cfg"))
    net = teacher_networks(layout, activation)
    params = jax.tree.map(jnp.asarray, ActorParams(actor=params))
    normalizers = {"actor": jax.tree.map(jnp.asarray, normalizer)} if normalizer is not None else {}

    def apply(x, state):
        return net.actor_step(params, normalizers, {"obs": x}, state)

    def init_state(num_envs: int):
        return net.init_hidden(num_envs).actor

    std = None if net.state_dependent_std else net.action_std(params)
    description = {"format": "rsl_rl_checkpoint", "state_dict": key, "model": layout.class_name,
                   "hidden_dims": list(layout.hidden_dims), "activation": net.activation, "rnn": layout.rnn_type,
                   "normalizer": layout.normalized, "distribution": layout.distribution_class}
    return LoadedPolicy(apply=apply, init_state=init_state, obs_dim=layout.input_dim, action_dim=layout.output_dim,
                   is_recurrent=net.is_recurrent, source=path, sha256=file_sha256(path), description=description,
                   action_std=std)
