"""Starting a run from another run's networks: ``runner.init_from=<model_<it>.pt | run directory | export>``.

The run's networks are built from its own config as usual; the source's weights and observation normalisers
(:func:`agile_jax.policies.weights.read_weights`: an agile_jax run, an RSL-RL checkpoint, or an exported MLP
policy's actor) then replace theirs, checked leaf by leaf: the env settings, rewards and extensions may differ (a
fine-tuning stage), the observations and network sizes may not. The optimiser, the iteration count and every
extension start fresh (a fine-tuning start, not a resume). An export holds no critic, action std, normaliser count
or optimiser state, so from an export the critic and the std start fresh (``policy.init_noise_std``) and a critic
warm-up (``algorithm.critic_warmup_steps``) lets the value function catch up before the policy moves.
``runner.init_from_max_std`` caps the loaded actor std, so such a stage can explore less than its source ended
with.

RSL-RL / Isaac Lab users may instead point ``runner.load_run`` at an RSL-RL run folder (or file) and
``runner.load_checkpoint`` at an iteration: :func:`rsl_rl_checkpoint_in` finds the ``model_<it>.pt``.
"""

from __future__ import annotations

import math
import os
import re

import jax
import jax.numpy as jnp

from agile_jax.config_base import ConfigError
from agile_jax.networks.actor_critic import ActorCritic
from agile_jax.networks.records import ActorParams
from agile_jax.policies.weights import check_tree, read_weights
from agile_jax.training.iteration import TrainState, place_state

_MODEL_FILE = re.compile(r"^model_(\d+)\.pt$")


def cap_std(params: ActorParams, networks: ActorCritic, max_std: float) -> ActorParams:
    """``params`` with the actor's state-independent std parameter capped at ``max_std`` per action."""
    if networks.state_dependent_std:
        raise ConfigError("runner.init_from_max_std caps a state-independent std; this actor outputs its std "
                          "(HeteroscedasticGaussianDistribution): leave init_from_max_std at 0")
    cap = max_std if networks.noise_std_type == "scalar" else math.log(max_std)
    return params.replace(actor={**params.actor, "std": jnp.minimum(params.actor["std"], cap)})


def initialize(state: TrainState, networks: ActorCritic, path: str, mesh, kind: str = "ppo") -> TrainState:
    """``state`` with the networks and normalisers of the source ``path`` (see the module docstring).

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
    loaded = read_weights(state, networks, path, kind)
    params, normalizers = state.params.by_network(), dict(state.normalizers)
    for name, (net_params, normalizer) in loaded.items():
        check_tree(name, net_params, params[name], path)
        params[name] = jax.tree.map(lambda new, old: jnp.asarray(new, old.dtype), net_params, params[name])
        if normalizer is not None:
            check_tree(f"{name} normaliser", normalizer, normalizers[name], path)
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
