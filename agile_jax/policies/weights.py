"""The weights of a policy source, checked against a run's networks: what ``runner.init_from`` starts a run from.

:func:`read_weights` takes the sources :func:`agile_jax.policies.load.load_policy` takes, but returns the networks'
parameters and normalisers (``{network: (params, normaliser or None)}``) instead of a policy function:

- an agile_jax run (its directory, ``checkpoints`` or ``checkpoints/<iteration>``; the newest intact checkpoint
  unless named): every network of the run's train state;
- an RSL-RL 5.x checkpoint ``model_<it>.pt``: actor (``actor_state_dict``; a distillation run's student:
  ``student_state_dict``) and critic (``critic_state_dict``). ``MLPModel`` and ``RNNModel`` (LSTM / GRU) networks
  are read, with a ``GaussianDistribution`` or ``HeteroscedasticGaussianDistribution``; ``CNNModel`` s against the
  run's CNN layout;
- an exported policy (``policy.onnx`` of ``experiments/export.py``, or the directory holding it with its
  ``policy.yaml``): the actor's weights alone (plain MLP actors without a normaliser).

Each difference between the source and the run's networks is refused in one line (:class:`ConfigError`) naming
the setting to change; a ``params/agent.yaml`` beside an RSL-RL checkpoint is also compared for the activation.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

from agile_jax.config_base import ConfigError
from agile_jax.export import rsl_rl
from agile_jax.export.rsl_rl_models import ModelLayout, read_model
from agile_jax.networks.actor_critic import ActorCritic
from agile_jax.policies.exported_weights import export_onnx_path, read_exported_mlp

# Which state dict of an RSL-RL checkpoint fills which network, per kind of run.
STATE_DICTS = {"ppo": {"actor": ("actor_state_dict",), "critic": ("critic_state_dict",)},
               "distillation": {"actor": ("student_state_dict",)}}
# The config keys of each network's hidden dims and normaliser, per kind of run.
SETTINGS = {"ppo": {"actor": ("policy.actor_hidden_dims", "policy.actor_obs_normalization"),
                    "critic": ("policy.critic_hidden_dims", "policy.critic_obs_normalization")},
            "distillation": {"actor": ("policy.student_hidden_dims", "policy.student_obs_normalization")}}


def _expected_class(networks: ActorCritic) -> str:
    if hasattr(networks, "actor_encoders"):
        return "CNNModel"
    return "RNNModel" if networks.is_recurrent else "MLPModel"


def _check_model(layout: ModelLayout, networks: ActorCritic, name: str, path: str, kind: str) -> None:
    """Refuses a checkpoint network the config does not describe, naming the setting to change."""
    where = f"runner.init_from '{path}': the {name}"
    expected = _expected_class(networks)
    if layout.class_name != expected:
        fix = {"RNNModel": f"policy.class_name=ActorCriticRecurrent with rnn_type={layout.rnn_type}, rnn_hidden_dim="
                           f"{layout.rnn_hidden_dim}, rnn_num_layers={layout.rnn_num_layers}",
               "MLPModel": "policy.class_name=ActorCritic", "CNNModel": "policy.class_name=ActorCriticCNN with the "
                                                                        "run's actor_cnn_cfg / critic_cnn_cfg"}
        raise ConfigError(f"{where} is an RSL-RL {layout.class_name}, the config builds an {expected}; set "
                          f"{fix[layout.class_name]}")
    if layout.rnn_type is not None:
        ours = (networks.rnn_type, networks.rnn_hidden_dim, networks.rnn_num_layers)
        theirs = (layout.rnn_type, layout.rnn_hidden_dim, layout.rnn_num_layers)
        if ours != theirs:
            raise ConfigError(f"{where}'s RNN is (rnn_type, rnn_hidden_dim, rnn_num_layers)={theirs}, the config's "
                              f"{ours}; set policy.rnn_type={theirs[0]} policy.rnn_hidden_dim={theirs[1]} "
                              f"policy.rnn_num_layers={theirs[2]}")
    hidden_key, norm_key = SETTINGS[kind][name]
    hidden = tuple(networks.actor_hidden_dims if name == "actor" else networks.critic_hidden_dims)
    if layout.hidden_dims != hidden:
        raise ConfigError(f"{where}'s MLP has hidden dims {list(layout.hidden_dims)}, the config "
                          f"{list(hidden)}; set {hidden_key}={list(layout.hidden_dims)}")
    on = networks.actor_obs_normalization if name == "actor" else networks.critic_obs_normalization
    if layout.normalized != on:
        raise ConfigError(f"{where} {'has' if layout.normalized else 'has no'} observation normaliser; set "
                          f"{norm_key}={str(layout.normalized).lower()}")
    if name == "actor":
        _check_distribution(layout, networks, where)


def _check_distribution(layout: ModelLayout, networks: ActorCritic, where: str) -> None:
    if layout.distribution_class != networks.distribution_class:
        raise ConfigError(f"{where} has a {layout.distribution_class}, the config a {networks.distribution_class}; "
                          f"set policy.distribution_cfg.class_name={layout.distribution_class}")
    if layout.std_type is not None and layout.std_type != networks.noise_std_type:
        raise ConfigError(f"{where}'s std parameter is std_type '{layout.std_type}', the config's "
                          f"'{networks.noise_std_type}'; set policy.distribution_cfg.std_type={layout.std_type} "
                          "(or policy.noise_std_type)")
    if layout.output_dim != networks.action_size:
        raise ConfigError(f"{where} outputs {layout.output_dim} actions, the environment takes {networks.action_size}")


def _check_agent_yaml(path: str, networks: ActorCritic) -> None:
    """Compares the activation (and a heteroscedastic std's std_type) of ``params/agent.yaml`` with the config."""
    cfg = rsl_rl.model_cfg_from_run_dir(path)
    activation = cfg.get("activation")
    if activation and str(activation).lower() != networks.activation.lower():
        raise ConfigError(f"runner.init_from '{path}': params/agent.yaml says activation '{activation}', the config "
                          f"'{networks.activation}'; set policy.activation={activation}")
    std_type = rsl_rl.std_type_from_run_dir(path)
    if networks.state_dependent_std and std_type and std_type != networks.noise_std_type:
        raise ConfigError(f"runner.init_from '{path}': params/agent.yaml says std_type '{std_type}', the config "
                          f"'{networks.noise_std_type}'; set policy.distribution_cfg.std_type={std_type}")


def check_tree(name: str, loaded, template, path: str) -> None:
    """Every entry of the template present in the loaded params with the same shape (the catch-all check)."""
    shapes = lambda tree: {jax.tree_util.keystr(k): tuple(jnp.shape(v))  # noqa: E731
                           for k, v in jax.tree_util.tree_flatten_with_path(tree)[0]}
    ours, theirs = shapes(template), shapes(loaded)
    for key in sorted(set(ours) | set(theirs)):
        if ours.get(key) != theirs.get(key):
            raise ConfigError(f"runner.init_from '{path}': {name}{key} is {theirs.get(key)} in the checkpoint and "
                              f"{ours.get(key)} in the config's network (observation groups: runner.obs_groups."
                              f"{name})")


def _read_network(networks: ActorCritic, checkpoint: Mapping, name: str, path: str, kind: str):
    """``(params, normaliser or None)`` of network ``name`` from its state dict in the checkpoint, checked."""
    keys = STATE_DICTS[kind][name]
    key = next((k for k in keys if checkpoint.get(k)), None)
    if key is None:
        raise ConfigError(f"runner.init_from '{path}' has no {' / '.join(keys)} (it holds {sorted(checkpoint)}); "
                          "a PPO run starts from a PPO checkpoint, a distillation run from a distillation one")
    try:
        layout, params, normalizer = read_model(checkpoint[key], f"{key} of '{path}'", actor=name == "actor")
    except ValueError as err:
        raise ConfigError(f"runner.init_from: {err}") from None
    _check_model(layout, networks, name, path, kind)
    return params, normalizer


def _read_cnn(networks: ActorCritic, checkpoint: Mapping, path: str) -> dict:
    """``{name: (params, normaliser or None)}`` of a ``CNNModel`` pair, read against the config's CNN layout."""
    from agile_jax.networks.cnn_actor_critic import params_from_rsl_rl

    try:
        params, normalizers = params_from_rsl_rl(networks, checkpoint["actor_state_dict"],
                                                 checkpoint["critic_state_dict"])
    except ValueError as err:
        raise ConfigError(f"runner.init_from '{path}': the CNNs do not fit the config's cnn_cfg: {err}") from None
    return {name: (net_params, normalizers.get(name)) for name, net_params in params.by_network().items()}


def _read_rsl_rl(networks: ActorCritic, path: str, kind: str) -> dict:
    """``{name: (params, normaliser or None)}`` of an RSL-RL checkpoint file, checked against the config."""
    try:
        checkpoint = rsl_rl.read_file(path)
    except (FileNotFoundError, ValueError) as err:
        raise ConfigError(f"runner.init_from: {err}") from None
    _check_agent_yaml(path, networks)
    if _expected_class(networks) == "CNNModel":
        return _read_cnn(networks, checkpoint, path)
    return {name: _read_network(networks, checkpoint, name, path, kind) for name in STATE_DICTS[kind]}


def _read_run(state: Any, path: str) -> dict:
    """``{name: (params, normaliser or None)}`` of every network of ``state`` in an agile_jax checkpoint (the
    shapes are checked by the caller)."""
    from agile_jax.io import checkpoint

    try:
        saved = checkpoint.restore_as_saved(path, ("params", "normalizers"))
    except checkpoint.CheckpointError as err:
        raise ConfigError(f"runner.init_from: {err}") from None
    names = list(state.params.by_network())
    missing = sorted(set(names) - set(saved["params"]))
    if missing:
        raise ConfigError(f"runner.init_from '{path}' has no {missing} network (it holds "
                          f"{sorted(saved['params'])}); start from a run of the same kind")
    return {name: (saved["params"][name], _as_template(saved["normalizers"].get(name), state.normalizers.get(name)))
            for name in names}


def _read_export(networks: ActorCritic, onnx_path: str, path: str, kind: str, template: Mapping) -> dict:
    """``{"actor": (params, None)}`` of an exported MLP policy, checked against the config; the actor's std
    parameter is the fresh one of ``template``."""
    where = f"runner.init_from '{path}'"
    if kind != "ppo":
        raise ConfigError(f"{where} is an exported policy: a distillation student starts from a distillation run "
                          "(runner.init_from=<run>/checkpoints/<iteration>)")
    try:
        exported = read_exported_mlp(onnx_path)
    except ValueError as err:
        raise ConfigError(f"runner.init_from: {err}; start from the run that trained it "
                          "(runner.init_from=<run>/checkpoints/<iteration>)") from None
    net = exported.network
    if _expected_class(networks) != "MLPModel" or networks.state_dependent_std:
        raise ConfigError(f"{where} is an exported MLP with a state-independent std; set policy.class_name="
                          "ActorCritic and policy.distribution_cfg.class_name=GaussianDistribution")
    hidden_key, norm_key = SETTINGS[kind]["actor"]
    if tuple(net["hidden_dims"]) != tuple(networks.actor_hidden_dims):
        raise ConfigError(f"{where}: the exported actor has hidden dims {net['hidden_dims']}, the config "
                          f"{list(networks.actor_hidden_dims)}; set {hidden_key}={net['hidden_dims']}")
    if str(net.get("activation", "")).lower() != networks.activation.lower():
        raise ConfigError(f"{where}: the exported actor uses activation '{net.get('activation')}', the config "
                          f"'{networks.activation}'; set policy.activation={net.get('activation')}")
    if networks.actor_obs_normalization:
        raise ConfigError(f"{where}: the exported actor has no observation normaliser; set {norm_key}=false")
    groups = list(networks.obs_groups["actor"])
    if list(net.get("obs_groups", groups)) != groups:
        raise ConfigError(f"{where}: the exported actor reads the observation groups {net['obs_groups']}, the "
                          f"config's actor {groups}; set runner.obs_groups.actor={net['obs_groups']}")
    params = {"mlp": exported.flax_params(), "std": template["std"]}
    return {"actor": (params, None)}


def _as_template(saved: Mapping | None, template):
    """A saved normaliser (a dict of its fields) as the template's record; ``None`` where either is missing."""
    if saved is None or template is None:
        return None
    return template.replace(**{key: saved.get(key) for key in vars(template)})


def read_weights(state: Any, networks: ActorCritic, path: str, kind: str = "ppo") -> dict:
    """``{network: (params, normaliser or None)}`` of the source ``path`` (see the module docstring), checked
    against ``networks``; :func:`check_tree` then checks each entry's shapes against ``state``'s.

    Args:
        state: a freshly initialised train state of the run (its ``params`` and ``normalizers`` are the
            templates).
        networks: the run's networks.
        path: an RSL-RL ``model_<it>.pt``, an agile_jax run / checkpoint directory, or an exported MLP policy
            (``policy.onnx`` or its directory).
        kind: ``"ppo"`` or ``"distillation"`` (which state dicts fill which network).

    Raises:
        ConfigError: the file is missing or not a checkpoint, or the config does not describe its networks.
    """
    onnx_path = export_onnx_path(path)
    if onnx_path is not None:
        return _read_export(networks, onnx_path, path, kind, state.params.actor)
    if os.path.isdir(path):
        return _read_run(state, path)
    return _read_rsl_rl(networks, path, kind)
