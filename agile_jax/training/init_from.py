"""Starting a run from another run's networks: ``runner.init_from=<model_<it>.pt | agile_jax run directory>``.

An agile_jax run (its directory, ``checkpoints`` or ``checkpoints/<iteration>``; the newest intact checkpoint
unless named) gives its networks' params and normalisers, checked leaf by leaf against the new run's networks:
the env settings, rewards and extensions may differ (a fine-tuning stage), the observations and network sizes
may not. ``runner.init_from_max_std`` caps the loaded actor std, so such a stage can explore less than its
source ended with.

The run's networks are built from its own config as usual; the checkpoint then replaces their weights and
observation normalisers: actor (``actor_state_dict``; a distillation run's student: ``student_state_dict``),
critic (``critic_state_dict``). ``MLPModel`` and ``RNNModel`` (LSTM / GRU) actors and critics are read, with a
``GaussianDistribution`` or ``HeteroscedasticGaussianDistribution``; ``CNNModel`` s are read against the run's
CNN layout. The optimiser, the iteration count and every extension start fresh (a fine-tuning start, not a resume
of the RSL-RL run). The config must describe the checkpoint's networks: each difference is refused in one line
naming the setting to change (a ``params/agent.yaml`` beside the checkpoint is also compared for the activation).

An exported policy (``policy.onnx`` of ``experiments/export.py``, or the directory holding it with its
``policy.yaml``, such as a shipped ``policies/<name>``) gives the actor's weights alone: the export holds no critic,
action std, normaliser count or optimiser state, so the critic and the std start fresh (``policy.init_noise_std``)
and a critic warm-up (``algorithm.critic_warmup_steps``) lets the value function catch up before the policy moves.
Only plain MLP actors without a normaliser are read this way; the others start from their run directory.

RSL-RL / Isaac Lab users may instead point ``runner.load_run`` at an RSL-RL run folder (or file) and
``runner.load_checkpoint`` at an iteration: :func:`rsl_rl_checkpoint_in` finds the ``model_<it>.pt``.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping

import jax
import jax.numpy as jnp

from agile_jax.config_base import ConfigError
from agile_jax.export import rsl_rl
from agile_jax.export.rsl_rl_models import ModelLayout, read_model
from agile_jax.networks.actor_critic import ActorCritic
from agile_jax.networks.records import ActorParams
from agile_jax.policies.exported_weights import export_onnx_path, read_exported_mlp
from agile_jax.training.iteration import TrainState, place_state

# Which state dict of an RSL-RL checkpoint fills which network, per kind of run.
STATE_DICTS = {"ppo": {"actor": ("actor_state_dict",), "critic": ("critic_state_dict",)},
               "distillation": {"actor": ("student_state_dict",)}}
# The config keys of each network's hidden dims and normaliser, per kind of run.
SETTINGS = {"ppo": {"actor": ("policy.actor_hidden_dims", "policy.actor_obs_normalization"),
                    "critic": ("policy.critic_hidden_dims", "policy.critic_obs_normalization")},
            "distillation": {"actor": ("policy.student_hidden_dims", "policy.student_obs_normalization")}}
_MODEL_FILE = re.compile(r"^model_(\d+)\.pt$")


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


def _check_tree(name: str, loaded, template, path: str) -> None:
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


def _read_run(state: TrainState, path: str) -> dict:
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


def cap_std(params: ActorParams, networks: ActorCritic, max_std: float) -> ActorParams:
    """``params`` with the actor's state-independent std parameter capped at ``max_std`` per action."""
    if networks.state_dependent_std:
        raise ConfigError("runner.init_from_max_std caps a state-independent std; this actor outputs its std "
                          "(HeteroscedasticGaussianDistribution): leave init_from_max_std at 0")
    cap = max_std if networks.noise_std_type == "scalar" else math.log(max_std)
    return params.replace(actor={**params.actor, "std": jnp.minimum(params.actor["std"], cap)})


def initialize(state: TrainState, networks: ActorCritic, path: str, mesh, kind: str = "ppo") -> TrainState:
    """``state`` with the networks and normalisers of the RSL-RL checkpoint ``path`` (see the module docstring).

    Args:
        state: a freshly initialised train state (its params are the template).
        networks: the run's networks.
        path: an RSL-RL ``model_<it>.pt``, an agile_jax run / checkpoint directory, or an exported MLP policy
            (``policy.onnx`` or its directory): its actor only.
        mesh: the trainer's device mesh (the new state is placed on it).
        kind: ``"ppo"`` or ``"distillation"`` (which state dicts fill which network).

    Raises:
        ConfigError: the file is missing or not a checkpoint, or the config does not describe its networks.
    """
    onnx_path = export_onnx_path(path)
    if onnx_path is not None:
        loaded = _read_export(networks, onnx_path, path, kind, state.params.actor)
    elif os.path.isdir(path):
        loaded = _read_run(state, path)
    else:
        loaded = _read_rsl_rl(networks, path, kind)
    params, normalizers = state.params.by_network(), dict(state.normalizers)
    for name, (net_params, normalizer) in loaded.items():
        _check_tree(name, net_params, params[name], path)
        params[name] = jax.tree.map(lambda new, old: jnp.asarray(new, old.dtype), net_params, params[name])
        if normalizer is not None:
            _check_tree(f"{name} normaliser", normalizer, normalizers[name], path)
            normalizers[name] = jax.tree.map(lambda new, old: jnp.asarray(new, old.dtype), normalizer,
                                             normalizers[name])
    return place_state(state.replace(params=state.params.replace(**params), normalizers=normalizers), mesh)


def rsl_rl_checkpoint_in(load_run: str, load_checkpoint: int, experiment_dir: str) -> str | None:
    """The RSL-RL ``model_<it>.pt`` that ``runner.load_run`` / ``load_checkpoint`` name, or ``None`` for one of
    our run folders (or nothing found).

    ``load_run`` is a path or a folder name under ``experiment_dir``: a ``.pt`` file, or an RSL-RL run folder
    (``model_<it>.pt`` files, no ``checkpoints`` folder); ``load_checkpoint`` picks the iteration (-1: the last).

    Raises:
        ConfigError: the folder has ``model_*.pt`` files but not the requested iteration.
    """
    path = load_run if os.path.exists(load_run) else os.path.join(experiment_dir, load_run)
    if os.path.isfile(path):
        return path if path.endswith(".pt") else None
    if not os.path.isdir(path) or os.path.isdir(os.path.join(path, "checkpoints")):
        return None
    found = {int(m.group(1)): name for name in os.listdir(path) if (m := _MODEL_FILE.match(name))}
    if not found:
        return None
    if load_checkpoint < 0:
        return os.path.join(path, found[max(found)])
    if load_checkpoint not in found:
        raise ConfigError(f"load_checkpoint={load_checkpoint}: '{path}' has no model_{load_checkpoint}.pt; "
                          f"available iterations: {sorted(found)}")
    return os.path.join(path, found[load_checkpoint])
