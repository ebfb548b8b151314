"""What a method file declares about itself: a :class:`Method` record, built from a typed :class:`BuildContext`.

Each method file in :mod:`agile_jax.extensions` ends with one ``METHOD = Method(...)``: when the config turns
it on (``enabled``), how it builds its extensions from the config, the run's :class:`BuildContext` and the
networks (``build``), an optional wrapper of the networks (a method that changes what the policy computes:
the state estimator, teacher-student), where it sits in the chain (``stage``), the config fields a resume
may not change, its config block (``config``: the field ``algorithm.<name>`` that
:class:`agile_jax.config.AlgorithmConfig` gains from the record) and the ``algorithm.class_name`` values that
name it. ``agile_jax.extensions.METHODS`` lists the records in chain order.

The context holds what the builders need to know about the env (an :class:`EnvSpec`, read from the env once
by :func:`env_spec`: no builder probes the env object), the run's shared PPO settings, the data axis and the
policy loaders (which live in the training layer and are passed in as callables).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, is_dataclass
from typing import Any

from agile_jax.config_base import PPOSettings
from agile_jax.runtime.parallel import AXIS

STAGES = ("first", "rest")


@dataclass(frozen=True)
class EnvSpec:
    """What the method builders read about the env.

    Attributes:
        name: the (single) env's class name, for messages.
        observation_shapes: observation group -> shape (no batch axis).
        action_size: action dimension.
        max_episode_length: episode length in control steps (``None`` if the env has none).
        dt: the env's ``dt`` attribute (``None`` if it has none).
        ctrl_dt: the env's ``ctrl_dt`` attribute (``None`` if it has none).
        layouts: group -> the env's ``<group>_layout`` table ((name, size, ...) entries), for the groups that have one.
        amp_joint_names: the joints of the env's ``amp`` layout (``()`` if it names none).
        mirror_obs, mirror_actions: the mirror functions (the user's, else the env's; ``None`` if neither).
    """

    name: str
    observation_shapes: Mapping[str, tuple[int, ...]]
    action_size: int
    max_episode_length: int | None = None
    dt: float | None = None
    ctrl_dt: float | None = None
    layouts: Mapping[str, Sequence] = field(default_factory=dict)
    amp_joint_names: Sequence[str] = ()
    mirror_obs: Callable | None = None
    mirror_actions: Callable | None = None


def env_spec(env, mirror_obs: Callable | None = None, mirror_actions: Callable | None = None) -> EnvSpec:
    """The :class:`EnvSpec` of a (single or batched) env: the only place that reads the env object.

    ``mirror_obs`` / ``mirror_actions`` given by the user replace the env's own.
    """
    single = getattr(env, "env", env)
    shapes = dict(env.observation_shapes)
    return EnvSpec(
        name=type(single).__name__,
        observation_shapes=shapes,
        action_size=env.action_size,
        max_episode_length=getattr(env, "max_episode_length", None),
        dt=getattr(single, "dt", None),
        ctrl_dt=getattr(single, "ctrl_dt", None),
        layouts={g: getattr(single, f"{g}_layout") for g in shapes if hasattr(single, f"{g}_layout")},
        amp_joint_names=getattr(single, "amp_joint_names", ()),
        mirror_obs=mirror_obs or getattr(single, "mirror_obs", None),
        mirror_actions=mirror_actions or getattr(single, "mirror_actions", None),
    )


@dataclass(frozen=True)
class BuildContext:
    """Everything a method's ``build`` / ``networks`` may read besides the config and the networks.

    Attributes:
        env: the env's :class:`EnvSpec`.
        ppo: the run's shared PPO settings (``cfg.algorithm``: epochs, minibatches, gradient clip ...), which a
            method with its own optimiser follows (RND's predictor, AMP's discriminator, the history encoder).
        axis: the name of the data axis the extensions reduce over.
        load_policy: ``path -> LoadedPolicy``: reads an exported policy, run directory or RSL-RL checkpoint
            (``agile_jax.policies.load.load_policy``); ``None`` where no teacher can be read.
        load_estimator_latent: ``path -> (latent fn, encoded components)`` of an exported policy's estimator
            (``agile_jax.policies.latents.onnx_estimator_latent``); ``None`` where none can be read.
    """

    env: EnvSpec
    ppo: PPOSettings
    axis: str = AXIS
    load_policy: Callable[[str], Any] | None = None
    load_estimator_latent: Callable[[str], Any] | None = None


@dataclass(frozen=True)
class Method:
    """One training method as the config builds it.

    Attributes:
        key: the method's short name.
        block: its config block's key (``algorithm.<name>_cfg``, or the one field that turns it on).
        enabled: ``cfg -> bool``: whether the run uses it.
        build: ``(cfg, ctx, networks) -> [Extension, ...]``, called when ``enabled``.
        stage: ``"first"``: among the rollout-side rewards, before the user's extra extensions and the timeout
            bootstrap; ``"rest"``: after the termination bootstrap and PPO's policy terms.
        networks: ``(cfg, ctx, networks) -> networks``, called when ``enabled`` (before any ``build``), for a
            method that changes what the policy computes; ``None`` otherwise.
        fixed_on_resume: config keys (dotted, from the root) a resumed run may not change.
        config: the block's type, a dataclass of the method's settings (``RNDConfig``) or a plain type for a
            one-field block (``int`` for ``algorithm.critic_warmup_steps``); ``None``: no block of its own.
        default: the value of a plain-typed block (a dataclass block defaults to ``config()``).
        class_names: the ``algorithm.class_name`` values (st_rl's, LeggedGym-Ex's) that include the method; a run
            that names one of them while the method is off is refused (``enabled`` decides whether the name alone
            switches it on).
        ranges: ``{dotted key: (test, valid range in words)}`` of the block's settings that
            :func:`agile_jax.validation.check_ranges` refuses out of range, before anything is built.
    """

    key: str
    block: str
    enabled: Callable[[Any], bool]
    build: Callable[[Any, BuildContext, Any], list]
    stage: str = "rest"
    networks: Callable[[Any, BuildContext, Any], Any] | None = None
    fixed_on_resume: tuple[str, ...] = ()
    config: type | None = None
    default: Any = None
    class_names: tuple[str, ...] = ()
    ranges: Mapping[str, tuple[Callable[[Any], bool], str]] = field(default_factory=dict)

    def __post_init__(self):
        if self.stage not in STAGES:
            raise ValueError(f"Method '{self.key}': stage must be one of {STAGES}, not '{self.stage}'")
        if self.config is not None and (not self.block.startswith("algorithm.") or self.block.count(".") != 1):
            raise ValueError(f"Method '{self.key}': block must be 'algorithm.<field>', not '{self.block}'")

    @property
    def field_name(self) -> str:
        """The block's field in ``algorithm`` (``rnd_cfg``)."""
        return self.block.partition(".")[2]

    def config_field(self) -> tuple[str, type, Any]:
        """``(name, type, dataclasses.field)`` of the block, for :func:`dataclasses.make_dataclass`."""
        if is_dataclass(self.config):
            return self.field_name, self.config, field(default_factory=self.config)
        return self.field_name, self.config, field(default=self.default)
