"""Configuration schemas (RSL-RL hyperparameter names) and ``key=value`` command-line merging.

A run is described by :class:`TrainConfig`: ``env`` (task specific), ``policy``, ``algorithm`` and
``runner``. Presets are plain functions returning a ``TrainConfig``; overrides are merged with
OmegaConf, and an unknown key, a wrong type or an unknown preset is refused with a message that
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
class SymmetryConfig:
    """AGILE/RSL-RL ``symmetry_cfg``; the mirror functions come from the env (``mirror_obs`` / ``mirror_actions``)."""

    enabled: bool = False
    use_data_augmentation: bool = True
    use_mirror_loss: bool = False
    mirror_loss_coeff: float = 0.0


@dataclass
class L2C2Config:
    """AGILE ``l2c2_cfg``."""

    enabled: bool = False
    lambda_actor: float = 1.0
    lambda_critic: float = 0.1


@dataclass
class RewardNormalizationConfig:
    """AGILE ``reward_normalization_cfg`` (``None`` disables a sub-feature)."""

    enabled: bool = False
    decay: float = 0.999
    epsilon: float = 1e-2
    return_scale_decay: Optional[float] = 0.999  # noqa: UP045 (OmegaConf needs Optional)
    outlier_threshold: Optional[float] = 10.0  # noqa: UP045


@dataclass
class RNDConfig:
    """RSL-RL ``rnd_cfg`` (Random Network Distillation); the state is the ``rnd_state`` set of
    ``runner.obs_groups``. ``weight`` is multiplied by the env's control step ``dt``, as RSL-RL does."""

    enabled: bool = False
    weight: float = 0.0
    weight_schedule: Optional[dict] = None  # noqa: UP045 {mode: constant|step|linear, initial_step, final_step, final_value}
    reward_normalization: bool = False
    state_normalization: bool = False
    learning_rate: float = 1e-3
    num_outputs: int = 1
    predictor_hidden_dims: list[int] = field(default_factory=lambda: [-1])
    target_hidden_dims: list[int] = field(default_factory=lambda: [-1])
    activation: str = "elu"


@dataclass
class EstimatorConfig:
    """st_rl's ``EstimatorPPO`` (``algorithm.estimator_cfg``): an estimator MLP fed by observation groups of the
    actor (``obs_components``; empty: all of them) learns named components of the critic observation
    (``target_components``, terms of the env's observation layout, e.g. ``base_lin_vel``); its estimate is
    appended to the actor's input. Trained by the PPO optimiser with ``loss_coef`` times its loss
    (``loss_func``: mse | l1 | smooth_l1 | huber, options in ``loss_kwargs``)."""

    enabled: bool = False
    obs_components: list[str] = field(default_factory=list)
    target_components: list[str] = field(default_factory=list)
    loss_func: str = "mse"
    loss_kwargs: dict = field(default_factory=dict)
    loss_coef: float = 1.0
    hidden_dims: list[int] = field(default_factory=lambda: [256, 128])


@dataclass
class TPPOConfig:
    """st_rl's ``TPPO`` (``algorithm.tppo_cfg``, teacher-guided PPO), on when ``teacher_policy`` names a policy file.

    The teacher (``policy.onnx`` / ``policy.pt``, anything :func:`agile_jax.policies.load.load_policy` reads)
    labels every step with its action on the critic observations (``label_action_with_critic_obs``, else the
    actor's; ``action_labels_from_sample``: a sample of a teacher that has an action std). Envs whose
    ``use_teacher_act_mask`` is set execute the label instead of the student's sample; the mask starts all set and
    is redrawn per env when its episode ends, with ``teacher_act_prob`` (a number in [0, 1] or st_rl's schedule
    ``linear`` | ``exp`` | ``tanh`` of the iteration, scaled by ``update_times_scale``). The loss adds
    ``distillation_loss_coef`` (a number or a schedule name) times ``distill_target`` (``real``: L2 norm,
    ``mse_sum``, ``l1``, ``tanh``: BCE of (x+1)/2, ``scaled_tanh``, ``max_log_prob``) between the student mean and
    the labels; ``using_ppo=false`` drops PPO's terms (DAgger). ``distill_latent_obs_component_mapping``
    ``{student component: teacher component}`` adds ``distill_latent_coef`` x ``distill_latent_target`` between the
    student's and the teacher's state-estimator outputs. ``buffer_dilation_ratio`` > 1 keeps that many rollouts of
    labelled steps for the distillation losses; ``hidden_state_resample_prob`` redraws stored recurrent states in
    [-1, 1]; ``clip_min_std`` is the floor of the action std after each update."""

    teacher_policy: str = ""
    label_action_with_critic_obs: bool = True
    teacher_act_prob: Any = "exp"  # float in [0, 1] | "linear" | "exp" | "tanh"
    update_times_scale: float = 100.0
    using_ppo: bool = True
    distillation_loss_coef: Any = 1.0  # float | "linear" | "exp" | "tanh"
    distill_target: str = "real"
    distill_latent_coef: float = 1.0
    distill_latent_target: str = "real"
    distill_latent_obs_component_mapping: Optional[dict] = None  # noqa: UP045 (OmegaConf needs Optional)
    buffer_dilation_ratio: float = 1.0
    hidden_state_resample_prob: float = 0.0
    action_labels_from_sample: bool = False
    clip_min_std: float = 0.0


@dataclass
class AMPConfig:
    """st_rl's ``APPO`` / ``ATPPO`` (``algorithm.amp_cfg``, adversarial motion priors): a discriminator on the env's
    ``amp`` observation group (``runner.obs_groups.amp``) learns to tell it from reference motions
    (``motion_files``: .npz motion files or shipped sets, see docs/motion_files.md) and rewards the policy with
    ``style_reward_coef * max(0, 1 - (D - 1)^2 / 4)``, mixed as ``(1 - task_reward_lerp) * style +
    task_reward_lerp * task``. ``discriminator_grad_pen`` weighs the gradient penalty on expert samples;
    the discriminator has its own Adam (``learning_rate``) and ``hidden_dims``. ATPPO: ``dagger_loss_coef`` pulls
    the policy mean towards the teacher policy in ``teacher_ac_path`` (observations: ``runner.obs_groups.teacher``);
    ``mimic_loss_coef`` weighs st_rl's ``|ref_obs - ref_motion|`` (needs an env ``ref_motion`` group).
    ``amp_obs_dim``: ``None`` takes the ``amp`` group's size, a number is checked against it."""

    enabled: bool = False
    motion_files: list[str] = field(default_factory=list)
    amp_obs_dim: Optional[int] = None  # noqa: UP045 (OmegaConf needs Optional)
    discriminator_loss_coef: float = 1.0
    discriminator_grad_pen: float = 5.0
    style_reward_coef: float = 1.0
    task_reward_lerp: float = 0.0
    hidden_dims: list[int] = field(default_factory=lambda: [1024, 512])
    activation: str = "relu"
    learning_rate: float = 1e-4
    mimic_loss_coef: float = 0.0
    dagger_loss_coef: float = 0.0
    teacher_ac_path: str = ""


@dataclass
class TeacherStudentConfig:
    """LeggedGym-Ex's ``PPO_TS`` / ``ActorCriticTS`` (``algorithm.ts_cfg``): a privilege encoder on the
    ``privileged`` set of ``runner.obs_groups`` (default: the critic's groups) gives the teacher's latent of
    ``num_latent_dims`` values (-1: the privileged width); a history encoder on the ``history`` set (groups of the
    actor; default: all of them) learns to match it with its own Adam at ``encoder_lr`` (``num_encoder_epochs``
    steps per minibatch) after PPO's epochs. The teacher acts in training; the student is evaluated and exported."""

    enabled: bool = False
    num_latent_dims: int = -1
    privilege_encoder_hidden_dims: list[int] = field(default_factory=lambda: [256, 128])
    history_encoder_type: str = "MLP"
    history_encoder_hidden_dims: list[int] = field(default_factory=lambda: [256, 128])
    encoder_lr: float = 1e-3
    num_encoder_epochs: int = 1


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
class AlgorithmConfig(OptimizerSettings):
    """PPO hyperparameters with RSL-RL's names and defaults (the optimiser's in :class:`OptimizerSettings`)."""

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
    symmetry_cfg: SymmetryConfig = field(default_factory=SymmetryConfig)
    l2c2_cfg: L2C2Config = field(default_factory=L2C2Config)
    reward_normalization_cfg: RewardNormalizationConfig = field(default_factory=RewardNormalizationConfig)
    critic_warmup_steps: int = 0  # AGILE: value-only gradient steps before the policy terms fade in
    rnd_cfg: RNDConfig = field(default_factory=RNDConfig)
    estimator_cfg: EstimatorConfig = field(default_factory=EstimatorConfig)
    tppo_cfg: TPPOConfig = field(default_factory=TPPOConfig)
    ts_cfg: TeacherStudentConfig = field(default_factory=TeacherStudentConfig)
    amp_cfg: AMPConfig = field(default_factory=AMPConfig)


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
    # allowed): an RSL-RL 5.x model_<it>.pt or an agile_jax run / checkpoints/<iteration> directory.
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
class TrainConfig:
    """A whole training run."""

    env: Any = None
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    algorithm: AlgorithmConfig = field(default_factory=AlgorithmConfig)
    runner: RunnerConfig = field(default_factory=RunnerConfig)


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


@dataclass
class DistillationAlgorithmConfig(OptimizerSettings):
    """RSL-RL ``Distillation`` hyperparameters (its optimiser's in :class:`OptimizerSettings`: no clipping unless
    ``max_grad_norm`` is set, then one norm over the student); ``symmetry_cfg`` adds AGILE's mirror loss (MLP
    students)."""

    max_grad_norm: Optional[float] = None  # noqa: UP045
    grad_clip_mode: str = "joint"
    class_name: str = "Distillation"
    num_learning_epochs: int = 1
    gradient_length: int = 15
    loss_type: str = "mse"  # "mse" | "huber"
    symmetry_cfg: SymmetryConfig = field(default_factory=SymmetryConfig)


@dataclass
class DistillationConfig:
    """A whole distillation run (``runner.obs_groups`` uses the ``student`` / ``teacher`` sets)."""

    env: Any = None
    policy: StudentTeacherConfig = field(default_factory=StudentTeacherConfig)
    algorithm: DistillationAlgorithmConfig = field(default_factory=DistillationAlgorithmConfig)
    runner: RunnerConfig = field(default_factory=RunnerConfig)


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
