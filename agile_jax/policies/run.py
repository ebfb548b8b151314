"""A run of this package (``experiments/train.py`` / ``OnPolicyRunner(log_dir=...)``) as a teacher.

``from_run(path)`` accepts the run directory (its newest checkpoint), its ``checkpoints`` directory (the
same) or one ``checkpoints/<iteration>`` directory. The checkpoint is verified against its ``checksums.json`` as
:func:`agile_jax.io.checkpoint.restore` does, then only its ``params`` and ``normalizers`` are read (the env
state, whose size depends on the run's env count, is left on disk). The actor is rebuilt from the ``policy`` and
``runner.obs_groups`` sections of the config stored with the checkpoint (else the run's ``config.yaml``) and acts
deterministically (the Gaussian mean, through the actor's normaliser), as ``runner.get_inference_policy()`` does.

``ActorCritic`` and ``ActorCriticRecurrent`` actors read the concatenation of their groups, so any groups of the
same total width feed them (``obs_dim`` is the width). An ``ActorCriticCNN`` actor encodes each 2-D group with
its own CNN: it is built when bound to the env's groups (``obs_dim`` -1), the i-th given group taking the place
of the i-th group it was trained on, with the shapes the checkpoint's weights fit.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import yaml

from agile_jax import config as config_lib
from agile_jax.extensions import METHODS
from agile_jax.io import checkpoint as ckpt
from agile_jax.networks import distributions
from agile_jax.networks.actor_critic import ActorCritic, concat_groups
from agile_jax.networks.records import ActorParams
from agile_jax.policies.loaded import LoadedPolicy

FLAT_GROUP = "obs"  # the one input group of a flat (MLP / RNN) teacher: the concatenated observation
RUN_HINT = "pass a run directory of experiments/train.py, its checkpoints/ or one checkpoints/<iteration>"


def is_run_checkpoint(path: str) -> bool:
    """Whether ``path`` names a run directory with ``checkpoints/``, a ``checkpoints`` directory or one of its
    ``<iteration>`` entries (present or not: :func:`from_run` lists the available ones). Only the layout is
    looked at; :func:`from_run` verifies the files."""
    directory, step = ckpt.checkpoints_dir(path)
    return os.path.isdir(directory) and (step is not None or os.path.isdir(path))


def _pick_step(directory: str, step: int | None, steps: Sequence[int], path: str) -> int:
    """The checkpoint to read: ``step``, else the newest; refused if missing or damaged (one line)."""
    if not steps:
        raise ValueError(f"teacher run '{path}' holds no complete checkpoint in '{directory}'; train it with a "
                         "save_interval (or runner.save()) first, or " + RUN_HINT)
    step = max(steps) if step is None else step
    if step not in steps:
        raise ValueError(f"teacher run '{path}' has no checkpoint {step}; available: {sorted(steps)}")
    problem = ckpt.damage(os.path.join(directory, str(step)))
    if problem is not None:
        intact = ckpt.intact_steps(directory, [s for s in steps if s != step])
        advice = f"pass '{os.path.join(directory, str(intact[-1]))}'" if intact else "no other checkpoint is intact"
        raise ValueError(f"teacher checkpoint {step} in '{directory}' is damaged ({problem}); {advice}")
    return step


def _read_meta(manager, step: int, step_dir: str) -> dict:
    """The JSON ``meta`` item of a checkpoint."""
    import orbax.checkpoint as ocp

    try:
        return dict(manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"])
    except Exception as err:  # noqa: BLE001 (Orbax raises many types for a foreign or damaged item)
        raise ValueError(f"teacher checkpoint '{step_dir}' has unreadable metadata ({type(err).__name__}); it was "
                         "not written by this package") from None


def _read_policy_state(step_dir: str) -> tuple[dict, dict]:
    """``(params, normalizers)`` of a checkpoint's ``state`` item as NumPy arrays (nothing else is read)."""
    import orbax.checkpoint as ocp
    from etils import epath

    state_dir = epath.Path(step_dir) / "state"
    handler = ocp.PyTreeCheckpointHandler()
    try:
        tree = handler.metadata(state_dir).tree
        wanted = {k: tree[k] for k in ("params", "normalizers") if k in tree and jax.tree.leaves(tree[k])}
        if "params" not in wanted:
            raise ValueError(f"teacher checkpoint '{step_dir}' holds no network params (items: {sorted(tree)})")
        item = jax.tree.map(lambda m: np.zeros(m.shape, m.dtype), wanted)
        args = jax.tree.map(lambda m: ocp.RestoreArgs(restore_type=np.ndarray), wanted)
        out = handler.restore(state_dir, args=ocp.args.PyTreeRestore(item=item, restore_args=args,
                                                                     partial_restore=True))
    except ValueError:
        raise
    except Exception as err:  # noqa: BLE001
        first = (str(err).strip().splitlines() or [""])[0][:200]
        raise ValueError(f"teacher checkpoint '{step_dir}' is corrupt or incomplete ({type(err).__name__}: "
                         f"{first})") from None
    finally:
        handler.close()
    return out["params"], out.get("normalizers", {})


def _config_text(meta: dict, directory: str) -> str:
    """The run's YAML: the copy stored with the checkpoint, else ``config.yaml`` beside ``checkpoints``."""
    if meta.get("config"):
        return meta["config"]
    path = os.path.join(os.path.dirname(directory), "config.yaml")
    if not os.path.isfile(path):
        raise ValueError(f"teacher run '{os.path.dirname(directory)}' has no config.yaml and its checkpoint stores "
                         "no config")
    with open(path) as f:
        return f.read()


def run_config(text: str, source: str) -> config_lib.TrainConfig:
    """The ``policy``, ``algorithm`` and ``runner`` sections of a run's YAML as a :class:`TrainConfig`
    (``env`` is ``None``: the teacher takes its observation shapes from the env it is bound to).

    Raises:
        ValueError: a distillation run, a run whose actor reads more than its groups (state estimator,
            teacher-student), or YAML this version cannot read (one line).
    """
    saved = yaml.safe_load(text) or {}
    algorithm = saved.get("algorithm") or {}
    if algorithm.get("class_name") == "Distillation":
        raise ValueError(f"teacher run '{source}' is a distillation run; export its student (runner.export()) and "
                         "pass its policy.onnx")
    sections = {k: v for k, v in saved.items() if k != "env"}
    try:
        cfg = config_lib.from_yaml(yaml.safe_dump(sections), config_lib.TrainConfig())
    except Exception as err:  # noqa: BLE001 (OmegaConf: a key or type the current schema does not know)
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        raise ValueError(f"teacher run '{source}': its config does not fit this version of agile_jax "
                         f"({first})") from None
    for method in METHODS:  # a method that wraps the networks (estimator, teacher-student) widens the actor's input
        if method.networks is not None and method.enabled(cfg):
            raise ValueError(f"teacher run '{source}' uses {method.block}, whose actor reads more than its "
                             "observation groups; export it (experiments/export.py <run>) and pass its policy.onnx")
    return cfg


def actor_groups(cfg) -> tuple[str, ...]:
    """The env groups the run's actor read (``runner.obs_groups.actor``; RSL-RL's default ``policy``)."""
    return tuple(cfg.runner.obs_groups.get("actor") or ["policy"])


def build_networks(cfg, shapes: Mapping[str, tuple[int, ...]], action_size: int) -> ActorCritic:
    """The run's actor-critic (``make_networks``) on the groups ``shapes`` (actor and critic both read them)."""
    from agile_jax.networks.from_config import make_networks

    groups = list(shapes)
    runner = dataclasses.replace(cfg.runner, obs_groups={"actor": groups, "critic": groups})
    policy = dataclasses.replace(cfg.policy, critic_cnn_cfg=None)  # the critic is not used: it shares the encoders
    algorithm = dataclasses.replace(cfg.algorithm, share_cnn_encoders=True)
    cfg = dataclasses.replace(cfg, policy=policy, runner=runner, algorithm=algorithm)
    return make_networks(cfg, SimpleNamespace(observation_shapes=dict(shapes), action_size=action_size))


def _child(tree: Any, key: Any) -> Any:
    """One step of a key path into restored nested dicts."""
    name = getattr(key, "key", getattr(key, "name", getattr(key, "idx", None)))
    if not isinstance(tree, Mapping) or str(name) not in tree:
        raise KeyError(name)
    return tree[str(name)]


def fit_to(template: Any, restored: Any, what: str) -> tuple[Any, str | None]:
    """``restored`` (nested dicts of arrays) in the structure of ``template`` (shape structs), or the first
    difference as ``(None, "<path>: checkpoint <shape> vs <shape>")``."""
    flat, treedef = jax.tree_util.tree_flatten_with_path(template)
    leaves = []
    for path, leaf in flat:
        value = restored
        try:
            for key in path:
                value = _child(value, key)
        except KeyError:
            return None, f"{what}{jax.tree_util.keystr(path)}: absent from the checkpoint"
        if tuple(np.shape(value)) != tuple(leaf.shape):
            return None, f"{what}{jax.tree_util.keystr(path)}: checkpoint {list(np.shape(value))} vs {list(leaf.shape)}"
        leaves.append(jnp.asarray(value, leaf.dtype))
    return jax.tree.unflatten(treedef, leaves), None


def policy_arrays(net: ActorCritic, params: dict, normalizers: dict) -> tuple[ActorParams, dict, str | None]:
    """``(ActorParams, {"actor": ...} or {}, problem)``: the actor's restored arrays shaped as ``net``'s."""
    template = jax.eval_shape(net.init, jax.random.key(0))
    actor, problem = fit_to(ActorParams(actor=template.actor), params, ".params")
    norm_template = {k: v for k, v in net.init_normalizers().items() if k == "actor"}
    norms, norm_problem = fit_to(norm_template, normalizers, ".normalizers")
    return actor, norms, problem or norm_problem


def output_width(params: dict, source: str) -> int:
    """Width of the actor MLP's last layer in a checkpoint's params as stored (nested dicts by network name)."""
    try:
        layers = params["actor"]["mlp"]["params"]
        return int(np.shape(layers[f"Dense_{len(layers) - 1}"]["bias"])[0])
    except (KeyError, TypeError, IndexError):
        raise ValueError(f"teacher checkpoint '{source}' holds no actor MLP") from None


def input_width(cfg, params: dict, source: str) -> int:
    """Width of a flat actor's input, its RNN's (``ActorCriticRecurrent``) or first layer's, in a checkpoint's
    params as stored."""
    try:
        if cfg.policy.class_name == "ActorCriticRecurrent":
            return int(np.shape(params["actor"]["rnn"]["layer_0"]["kernel_ih"])[0])
        return int(np.shape(params["actor"]["mlp"]["params"]["Dense_0"]["kernel"])[0])
    except (KeyError, TypeError, IndexError):
        raise ValueError(f"teacher checkpoint '{source}' does not hold a {cfg.policy.class_name} actor") from None


@dataclass(frozen=True)
class RunPolicy(LoadedPolicy):
    """A :class:`LoadedPolicy` read from a run of this package.

    Attributes:
        config: the run's :class:`~agile_jax.config.TrainConfig` (``env`` ``None``).
        params, normalizers: the checkpoint's restored ``params`` and ``normalizers`` (NumPy nested dicts);
            a CNN actor is built from them by :meth:`bind`.
    """

    config: Any = None
    params: Any = None
    normalizers: Any = None

    def bind(self, obs_groups: Sequence[str], obs_shapes: Mapping[str, tuple[int, ...]]):
        """``teacher(obs, state) -> (actions, state)`` on the groups ``obs_groups`` of an env.

        Raises:
            ValueError: the groups do not give what the teacher's actor reads (one line naming both).
        """
        groups = list(obs_groups)
        if self.obs_dim >= 0:
            width = sum(math.prod(obs_shapes[g]) for g in groups)
            if width != self.obs_dim:
                raise ValueError(self._mismatch(groups, f"{width}", f"{self.obs_dim} observations"))

            def teacher(obs, state):
                return self.apply(concat_groups(obs, groups, obs_shapes), state)

            return teacher
        return self._bind_cnn(groups, obs_shapes)

    def _mismatch(self, groups: list[str], given: str, reads: str) -> str:
        return (f"the teacher run '{self.source}' reads {reads} (its groups {list(self.obs_groups)}) but the groups "
                f"{groups} give {given}; set runner.obs_groups.teacher to the groups it was trained on")

    def _bind_cnn(self, groups: list[str], obs_shapes: Mapping[str, tuple[int, ...]]):
        """A CNN actor on ``groups`` standing in for the teacher's own groups, position by position."""
        own = list(self.obs_groups)
        shapes = {mine: tuple(obs_shapes[g]) for mine, g in zip(own, groups)}
        given = f"shapes {[list(obs_shapes[g]) for g in groups]}"
        if len(groups) != len(own):
            raise ValueError(self._mismatch(groups, given, f"{len(own)} groups"))
        try:
            net = build_networks(self.config, shapes, self.action_dim)
        except ValueError as err:
            raise ValueError(self._mismatch(groups, given, f"other shapes ({err})")) from None
        params, normalizers, problem = policy_arrays(net, self.params, self.normalizers)
        if problem:
            raise ValueError(self._mismatch(groups, given, f"other shapes ({problem})"))

        def teacher(obs, state):
            return net.actor_mean(params, normalizers, {mine: obs[g] for mine, g in zip(own, groups)}), state

        return teacher


def _unbound(x, state):
    raise TypeError("a CNN teacher reads observation groups, not a flat vector: use teacher.bind(groups, shapes)")


def _distribution(cfg) -> dict:
    """The actor distribution's fields of the run's ``policy`` section (see ``resolve_distribution_cfg``)."""
    pol = cfg.policy
    return distributions.resolve_distribution_cfg(pol.distribution_cfg, pol.init_noise_std, pol.noise_std_type)


def _action_size(cfg, params: dict, source: str) -> int:
    """Number of actions: the actor's output width (half of it for a state-dependent std)."""
    out = output_width(params, source)
    return out // 2 if _distribution(cfg)["distribution_class"] == distributions.HETEROSCEDASTIC else out


def _flat_teacher(cfg, params: dict, normalizers: dict, source: str) -> dict:
    """``apply``, ``init_state``, ``obs_dim`` and ``action_std`` of an MLP / RNN actor on its concatenated input."""
    width = input_width(cfg, params, source)
    net = build_networks(cfg, {FLAT_GROUP: (width,)}, _action_size(cfg, params, source))
    actor, norms, problem = policy_arrays(net, params, normalizers)
    if problem:
        raise ValueError(f"teacher checkpoint '{source}' does not fit its run's config ({problem})")

    def apply(x, state):
        return net.actor_step(actor, norms, {FLAT_GROUP: x}, state)

    def init_state(num_envs: int):
        return net.init_hidden(num_envs).actor

    std = None if net.state_dependent_std else net.action_std(actor)
    return dict(apply=apply, init_state=init_state, obs_dim=width, action_dim=net.action_size,
                is_recurrent=net.is_recurrent, action_std=std)


def _cnn_teacher(cfg, params: dict, source: str) -> dict:
    """The fields of a CNN actor before :meth:`RunPolicy.bind` (its input width depends on the image sizes)."""
    dist, std = _distribution(cfg), None
    if dist["distribution_class"] != distributions.HETEROSCEDASTIC:
        try:
            std = distributions.std_from_param(jnp.asarray(params["actor"]["std"]), dist["noise_std_type"],
                                               dist["std_range"])
        except KeyError:
            raise ValueError(f"teacher checkpoint '{source}' holds no actor std") from None
    return dict(apply=_unbound, init_state=lambda num_envs: (), obs_dim=-1,
                action_dim=_action_size(cfg, params, source), is_recurrent=False, action_std=std)


def from_run(path: str) -> RunPolicy:
    """The deterministic actor of a run's checkpoint (see the module docstring).

    Args:
        path: ``<run>`` or ``<run>/checkpoints`` (the newest checkpoint), or ``<run>/checkpoints/<iteration>``.

    Raises:
        ValueError: no checkpoint there, a damaged or unreadable one, or a run whose actor cannot be rebuilt
            (one line naming the problem).
    """
    import orbax.checkpoint as ocp

    directory, wanted = ckpt.checkpoints_dir(path)
    if not os.path.isdir(directory):
        raise ValueError(f"teacher '{path}' has no checkpoints directory; {RUN_HINT}")
    manager = ocp.CheckpointManager(directory, item_names=("state", "meta"))
    try:
        step = _pick_step(directory, wanted, list(manager.all_steps()), path)
        step_dir = os.path.join(directory, str(step))
        meta = _read_meta(manager, step, step_dir)
    finally:
        manager.close()
    cfg = run_config(_config_text(meta, directory), path)
    params, normalizers = _read_policy_state(step_dir)
    cnn = cfg.policy.class_name == "ActorCriticCNN"
    fields = _cnn_teacher(cfg, params, step_dir) if cnn else _flat_teacher(cfg, params, normalizers, step_dir)
    with open(os.path.join(step_dir, ckpt.CHECKSUMS), "rb") as f:
        sha = hashlib.sha256(f.read()).hexdigest()  # the digests of every file of the checkpoint
    pol = cfg.policy
    description = {"format": "run_checkpoint", "checkpoint": step_dir, "iteration": step, "model": pol.class_name,
                   "hidden_dims": list(pol.actor_hidden_dims), "activation": pol.activation,
                   "rnn": pol.rnn_type if pol.class_name == "ActorCriticRecurrent" else None,
                   "normalizer": bool(pol.actor_obs_normalization)}
    return RunPolicy(**fields, source=path, obs_groups=actor_groups(cfg), sha256=sha, description=description,
                      config=cfg, params=params, normalizers=normalizers)
