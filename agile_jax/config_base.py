"""The configuration's shared parts: the schemas every run has (policy, optimiser, PPO, runner, distillation
student) and ``key=value`` command-line merging.

Each training method's own block (``algorithm.rnd_cfg``, ...) lives in its method file; :mod:`agile_jax.config`
composes the whole :class:`~agile_jax.config.TrainConfig` from these schemas and the methods' records. Overrides
are merged with OmegaConf, and an unknown key, a wrong type or an unknown preset is refused with a message that
names it and suggests the closest valid one.
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field
from typing import Any, Optional

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException


class ConfigError(ValueError):
    """A configuration the user asked for cannot be built; the message says how to fix it."""


@dataclass
class PolicyConfig:
    """Actor-critic layout (RSL-RL ``ActorCritic`` / ``MLPModel`` / ``RNNModel`` names).

    ``class_name="ActorCriticRecurrent"`` puts an ``rnn_type`` RNN (``rnn_num_layers`` x ``rnn_hidden_dim``)
    between the normaliser and the MLP of both actor and critic. ``class_name="ActorCriticCNN"`` (RSL-RL's
    ``CNNModel`` per network) encodes every 2-D observation group with a CNN of ``actor_cnn_cfg`` /
    ``critic_cnn_cfg`` before the MLP.
    """

    class_name: str = "ActorCritic"  # "ActorCritic" | "ActorCriticRecurrent" | "ActorCriticCNN"
    init_noise_std: float = 1.0
    noise_std_type: str = "scalar"  # "scalar" | "log"
    actor_hidden_dims: list[int] = field(default_factory=lambda: [256, 256, 256])
    critic_hidden_dims: list[int] = field(default_factory=lambda: [256, 256, 256])
    activation: str = "elu"
    actor_obs_normalization: bool = False
    critic_obs_normalization: bool = False
    rnn_type: str = "lstm"  # "lstm" | "gru" (ActorCriticRecurrent)
    rnn_hidden_dim: int = 256
    rnn_num_layers: int = 1
    # RSL-RL 5.x actor distribution: {class_name: GaussianDistribution | HeteroscedasticGaussianDistribution,
    # init_std, std_type, std_range}; None: GaussianDistribution with init_noise_std / noise_std_type.
    distribution_cfg: Optional[dict] = None  # noqa: UP045 (OmegaConf needs Optional)
    # ActorCriticCNN (RSL-RL's CNNModel as actor and critic): an RSL-RL cnn_cfg {output_channels, kernel_size, stride,
    # dilation, padding, norm, activation, max_pool, global_pool, flatten} used for every 2-D ([C, H, W])
    # observation group, or {group: cnn_cfg}; critic_cnn_cfg None: the actor's configuration (own weights).
    actor_cnn_cfg: Optional[dict] = None  # noqa: UP045
    critic_cnn_cfg: Optional[dict] = None  # noqa: UP045


@dataclass
class OptimizerSettings:
    """The optimiser fields that PPO's and distillation's ``algorithm`` sections share, with RSL-RL's names
    (:func:`agile_jax.algorithms.optim.optimizer_from` builds the optimiser of either).

    ``max_grad_norm``: the gradient-norm clip (``None``: none); ``grad_clip_mode``: ``"per_network"`` clips the
    actor's and the critic's gradients separately (RSL-RL 5.x PPO), ``"joint"`` clips all of them as one (AGILE's
    PPO and RSL-RL's ``Distillation``)."""

    optimizer: str = "adam"
    learning_rate: float = 1e-3
    max_grad_norm: Optional[float] = 1.0  # noqa: UP045
    grad_clip_mode: str = "per_network"  # "per_network" | "joint"


@dataclass
class PPOSettings(OptimizerSettings):
    """PPO hyperparameters with RSL-RL's names and defaults (the optimiser's in :class:`OptimizerSettings`).

    :class:`agile_jax.config.AlgorithmConfig` adds each method's block to these (its ``Method`` record's ``config``).
    """

    class_name: str = "PPO"
    num_learning_epochs: int = 5
    num_mini_batches: int = 4
    schedule: str = "adaptive"  # "adaptive" | "fixed"
    desired_kl: float = 0.01
    clip_param: float = 0.2
    gamma: float = 0.99
    lam: float = 0.95
    value_loss_coef: float = 1.0
    entropy_coef: float = 0.01
    use_clipped_value_loss: bool = True
    normalize_advantage_per_mini_batch: bool = False
    share_cnn_encoders: bool = False  # RSL-RL 5.x: the critic reads the actor's CNN encoders (ActorCriticCNN)



@dataclass
class RunnerConfig:
    """Runner settings (RSL-RL ``OnPolicyRunner`` plus the Isaac Lab fields that live beside it)."""

    seed: int = 1
    num_steps_per_env: int = 24
    max_iterations: int = 1500
    save_interval: int = 50
    keep_checkpoints: int = 5
    experiment_name: str = "default"
    run_name: str = ""
    log_root: str = "logs"
    # "tensorboard" | "wandb" | "neptune" | "none"; wandb and neptune also write the TensorBoard files.
    logger: str = "tensorboard"
    wandb_project: str = "agile_jax"  # W&B project (entity: $WANDB_USERNAME, offline: WANDB_MODE=offline)
    neptune_project: str = "agile_jax"  # Neptune project, "$NEPTUNE_USERNAME/<name>" unless it holds a "/"
    check_for_nan: bool = True
    obs_groups: dict[str, list[str]] = field(default_factory=lambda: {"actor": ["policy"], "critic": ["policy"]})
    init_at_random_ep_len: bool = False
    # Data-parallel devices (0 = all local devices); envs are split evenly over them.
    num_devices: int = 0
    # Normaliser statistics use only rows from the first `normalizer_until` samples (None: always).
    normalizer_until: Any = None
    resume: bool = False
    load_run: str = ""  # run directory name (or path); "" with resume=True: the latest run
    load_checkpoint: int = -1  # iteration to load; -1: the latest
    # Start from a checkpoint's networks and normalisers (fresh optimiser, iteration 0, other env settings
    # allowed): an RSL-RL 5.x model_<it>.pt, an agile_jax run / checkpoints/<iteration> directory, or an exported
    # MLP policy (policy.onnx or its directory, e.g. policies/t1_velocity): its actor only, critic and std fresh.
    init_from: str = ""
    # With init_from: the actor's state-independent std is capped at this value per action (0: kept as loaded),
    # so a fine-tuning stage can start with less exploration noise than its source ended with.
    init_from_max_std: float = 0.0
    progress_bar: bool = True
    # One fused XLA program per iteration (fastest). False runs collection and learning as two programs and
    # logs Perf/collection_time and Perf/learning_time separately.
    fused_iteration: bool = True
    # Precision of float32 matrix products in training (JAX's names: "highest" = full float32, "high" /
    # "default" = TF32 on recent NVIDIA GPUs, bfloat16 passes on TPUs). Export and teacher checks always
    # compare against a float32-exact reference, whatever this says. No effect on a CPU.
    matmul_precision: str = "highest"
    # Bit-repeatable runs on GPUs (XLA's deterministic ops; costs throughput). CPU runs always are.
    deterministic: bool = False
    # Entropy-coefficient annealing (AGILE runner fields).
    enable_entropy_coef_annealing: bool = False
    entropy_coef_annealing_start_progress: float = 0.1
    enable_entropy_coef_annealing_success_rate: float = 0.8
    entropy_annealing_decay_rate: Optional[float] = None  # noqa: UP045 (None: linear decay)
    min_entropy_coef: float = 0.0


@dataclass
class StudentTeacherConfig:
    """Student and teacher of a distillation run (AGILE's ``StudentTrainedTeacher[Recurrent]``).

    The teacher is an exported policy file (``policy.onnx`` / ``policy.pt``, ours or RSL-RL's) read once into
    a JAX function; the student is a Gaussian MLP, or ``rnn_type`` RNN + MLP for the ``...Recurrent`` class.
    """

    class_name: str = "StudentTrainedTeacher"  # "StudentTrainedTeacher" | "StudentTrainedTeacherRecurrent"
    teacher_path: str = ""
    student_hidden_dims: list[int] = field(default_factory=lambda: [256, 256, 128])
    activation: str = "elu"
    init_noise_std: float = 0.1
    noise_std_type: str = "scalar"  # "scalar" | "log"
    student_obs_normalization: bool = False
    rnn_type: str = "lstm"  # "lstm" | "gru"
    rnn_hidden_dim: int = 256
    rnn_num_layers: int = 1
    distribution_cfg: Optional[dict] = None  # noqa: UP045 the student's, as PolicyConfig.distribution_cfg


# -- command-line merging ---------------------------------------------------------------------------


def leaf_keys(cfg: Any, prefix: str = "") -> list[str]:
    """Every dotted leaf key of a dataclass config (dict-valued fields count as leaves)."""
    keys = []
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        path = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value):
            keys.extend(leaf_keys(value, path + "."))
        else:
            keys.append(path)
    return keys


def resolve_key(key: str, keys: list[str]) -> str:
    """Full dotted key for ``key``; a unique leaf name (``num_envs``) is accepted as a shortcut."""
    if key in keys or any(k.startswith(key + ".") for k in keys):
        return key
    prefix = key.split(".")[0]
    if any(k.split(".")[0] == prefix for k in keys) and "." in key:
        parent = ".".join(key.split(".")[:-1])
        if any(k.startswith(parent + ".") or k == parent for k in keys):
            # e.g. runner.obs_groups.actor: a key inside a dict-valued field.
            if parent in keys:
                return key
    matches = [k for k in keys if k.split(".")[-1] == key]
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        raise ConfigError(f"config key '{key}' is ambiguous: write one of {matches}")
    close = difflib.get_close_matches(key, keys, n=1, cutoff=0.5) or difflib.get_close_matches(
        key.split(".")[-1], [k.split(".")[-1] for k in keys], n=1, cutoff=0.6
    )
    hint = f"; did you mean '{_full(close[0], keys)}'?" if close else ""
    raise ConfigError(f"unknown config key '{key}'{hint}")


def _full(name: str, keys: list[str]) -> str:
    return name if name in keys else next((k for k in keys if k.endswith("." + name)), name)


def apply_overrides(cfg: Any, overrides: list[str]) -> Any:
    """Returns a copy of the dataclass ``cfg`` with ``key=value`` overrides merged (OmegaConf syntax).

    Raises:
        ConfigError: malformed override, unknown key (with a did-you-mean) or a value of the wrong type.
    """
    keys = leaf_keys(cfg)
    resolved = []
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override '{item}' is not of the form key=value")
        key, value = item.split("=", 1)
        resolved.append(f"{resolve_key(key.strip(), keys)}={value}")
    schema = OmegaConf.structured(cfg)
    try:
        merged = OmegaConf.merge(schema, OmegaConf.from_dotlist(resolved))
        return OmegaConf.to_object(merged)
    except OmegaConfBaseException as err:
        key = getattr(err, "full_key", None) or "?"
        expected = _expected_type(cfg, key)
        reason = str(getattr(err, "msg", err)).splitlines()[0]
        raise ConfigError(f"bad value for config key '{key}': {reason}{expected}") from None


def _expected_type(cfg: Any, key: str) -> str:
    obj = cfg
    parts = key.split(".")
    for part in parts[:-1]:
        obj = getattr(obj, part, None)
    if obj is None or not dataclasses.is_dataclass(obj):
        return ""
    for f in dataclasses.fields(obj):
        if f.name == parts[-1]:
            return f" (expected {getattr(f.type, '__name__', f.type)}, e.g. {parts[-1]}={getattr(obj, f.name)!r})"
    return ""


def to_yaml(cfg: Any) -> str:
    """The config as YAML (stored beside checkpoints)."""
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))


def from_yaml(text: str, template: Any) -> Any:
    """Rebuilds a config of the same schema as ``template`` from :func:`to_yaml` output."""
    return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(template), OmegaConf.create(text)))
