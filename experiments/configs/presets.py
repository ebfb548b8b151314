"""The preset table and the env factory behind ``config=<name>``."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from agile_jax.config import AlgorithmConfig, ConfigError, PolicyConfig, RunnerConfig, TrainConfig
from agile_jax.extensions.amp import AMPConfig
from envs.core import VecEnv
from envs.tasks.point_mass import PointMass, PointMassConfig
from envs.tasks.point_mass_amp import PointMassAMP, PointMassAMPConfig


@dataclass
class VelocityEnvConfig:
    """Command-line face of the humanoid velocity task (``envs.tasks.velocity``); the rest keeps AGILE's values.

    Attributes:
        robot: ``"t1"`` (Booster T1) or ``"g1"`` (Unitree G1).
        num_envs: parallel environments.
        impl: physics implementation: ``"auto"`` (the default: ``"c"`` where JAX runs on the CPU only, else
            ``"jax"``), ``"jax"`` (MJX, everywhere), ``"c"`` (MuJoCo C on the host CPUs, called from the jitted
            step; refused where JAX has an accelerator) or ``"warp"`` (MuJoCo Warp on a CUDA GPU or on
            Warp's CPU device; needs the ``warp`` extra; one device only).
        episode_length_s: episode time limit (s).
        obs_noise: corrupt the policy observations with AGILE's uniform noise.
        random_arm_motion: drive arms and head to random targets as a disturbance.
        domain_randomization: randomise friction, masses, CoM, gains, armature and joint friction.
        pushes / wrenches: interval velocity pushes and external wrenches.
        lin_vel_x, lin_vel_y, ang_vel_z: command ranges (m/s, rad/s).
        rel_standing_envs: fraction of envs with a zero command.
        termination_type / termination_sigma: how the learner treats the fall terminations (tilt, trunk
            contact, low trunk): AGILE's T1 uses ``"neutral"`` with a termination penalty; ``"bad"`` bootstraps
            them with ``gamma V(s_t) - sigma`` so that falling can never be cheaper than continuing.
        reward_set: ``"agile"`` (AGILE's reward table and action-rate curricula), ``"walk"`` (the walking
            recipe, ``envs.tasks.velocity.walking_rewards``), ``"walk_clock"`` (plus Playground's ``feet_phase``)
            or ``"walk_swing"`` (plus Booster Gym's ``feet_swing``); the last two need ``gait_clock_hz``.
        reward_weights: per-term weight overrides of the reward set, e.g. ``env.reward_weights.feet_air_time=0``
            (0 removes a term).
        reward_params: per-term parameter overrides, e.g. ``'env.reward_params.track_lin_vel_xy_exp={std: 0.2}'``.
        reward_ramps: per-term weight ramps (Isaac Lab's ``update_reward_weight_step``): the term keeps its weight
            until the global control step ``start_step`` (iterations x ``num_steps_per_env``), then moves linearly
            to ``weight`` over ``num_steps`` control steps, e.g.
            ``'env.reward_ramps.feet_swing={start_step: 24000, num_steps: 12000, weight: 10.0}'``; a ramp may turn on
            a term of weight 0 (``stand_still`` in the walking sets).
        reward_param_steps: per-term parameter switches (Isaac Lab's ``modify_term_cfg``): from the global control
            step ``start_step`` on, the term is computed with ``params`` merged over its own, e.g.
            ``'env.reward_param_steps.track_ang_vel={start_step: 60000, params: {std: 0.5}}'``.
        gait_clock_hz: a gait clock of this frequency (Hz) in the observations (``envs.mdp.gait``; needed by
            ``reward_set=walk_clock`` and ``walk_swing``); 0: none (AGILE's observations).
        gait_clock_stand_below: the clock observation is zero while the command's norm is at most this, so the
            policy can tell standing from stepping (Booster Gym stops its clock at a zero command); 0: never.
        only_positive_rewards: each step's reward sum without the termination penalty is clipped at 0, then the
            penalty is added (legged_gym's rule; Booster Gym and MuJoCo Playground clip too).
        tilt_limit_deg: the trunk tilt (degrees from upright) that ends an episode as a fall; AGILE's 30.
        privileged_critic: the critic also reads the randomised model parameters and the external wrench on the
            root (``envs.mdp.privileged``; legged_gym's privileged observations); the policy's do not change.
        solver_iterations: the most Newton iterations per physics step. The default 10 lets every step converge;
            fewer is cheaper where the solver dominates (MJX) but inexact, and the plain-MuJoCo evaluator always
            runs the converged solve (``envs.robots.assets.SolverOptions``).
    """

    robot: str = "t1"
    num_envs: int = 4096
    impl: str = "auto"
    episode_length_s: float = 30.0
    obs_noise: bool = True
    random_arm_motion: bool = True
    domain_randomization: bool = True
    pushes: bool = True
    wrenches: bool = True
    lin_vel_x: list[float] = field(default_factory=lambda: [-0.5, 0.5])
    lin_vel_y: list[float] = field(default_factory=lambda: [-0.5, 0.5])
    ang_vel_z: list[float] = field(default_factory=lambda: [-1.0, 1.0])
    rel_standing_envs: float = 0.25
    termination_type: str = "neutral"
    termination_sigma: float = 5.0
    reward_set: str = "agile"
    reward_weights: dict[str, float] = field(default_factory=dict)
    reward_params: dict[str, Any] = field(default_factory=dict)
    reward_ramps: dict[str, Any] = field(default_factory=dict)
    reward_param_steps: dict[str, Any] = field(default_factory=dict)
    gait_clock_hz: float = 0.0
    gait_clock_stand_below: float = 0.0
    only_positive_rewards: bool = False
    privileged_critic: bool = False
    tilt_limit_deg: float = 30.0
    solver_iterations: int = 10

    def __post_init__(self):
        if self.impl not in ("jax", "auto"):  # the check imports MJX; these need none of it (auto always runs)
            from envs import mjx_impl

            try:
                mjx_impl.check_impl(self.impl)
            except ValueError as err:
                raise ConfigError(f"env.{err}") from None


@dataclass
class RoughVelocityEnvConfig(VelocityEnvConfig):
    """The velocity task on rough terrain (``envs.terrain``: AGILE's ``LESS_ROUGH_TERRAIN_CFG``, scaled down).

    A class of its own (not extra fields on :class:`VelocityEnvConfig`) so that saved flat runs keep matching
    their schema.

    Attributes:
        terrain_rows: difficulty levels of the tile grid (AGILE: 20).
        terrain_cols: tile columns, 5/6 random-uniform rough and 1/6 random grid (AGILE: 16).
        terrain_tile_size: tile side (m); AGILE's curriculum counts an episode travelling more than 4 m (half a
            tile) as a success (``envs.mdp.curriculum``).
        terrain_max_init_level: episodes start on a level in ``[0, terrain_max_init_level]``.
        terrain_seed: generator seed.
        terrain_max_contact_points: MJX contact cap (deepest contacts kept per step; 0 keeps all). Foot spheres
            on a heightfield make up to 32 contacts instead of 8 on a plane; 16 ran ~10% faster on a CPU.
    """

    terrain_rows: int = 10
    terrain_cols: int = 8
    terrain_tile_size: float = 8.0
    terrain_max_init_level: int = 1
    terrain_seed: int = 0
    terrain_max_contact_points: int = 0


@dataclass
class RoughScanVelocityEnvConfig(RoughVelocityEnvConfig):
    """The rough velocity task plus Isaac Lab's height scan as a 2-D observation group ``height_scan``
    ``[1, ny, nx]`` (``envs.mdp.height_scan``: a yaw-aligned ray grid under the base, terrain heights from
    ``height_at``, ``base z - terrain z - 0.5`` clipped to +-1, noisy with ``obs_noise``).

    Attributes:
        height_scan_resolution: grid spacing (m); Isaac Lab's ``GridPatternCfg(resolution=0.1)``.
        height_scan_size: ``[length along x, width along y]`` (m); Isaac Lab's ``size=[1.6, 1.0]`` (11 x 17 rays).
    """

    height_scan_resolution: float = 0.1
    height_scan_size: list[float] = field(default_factory=lambda: [1.6, 1.0])


@dataclass
class AmpVelocityEnvConfig(VelocityEnvConfig):
    """The velocity task plus the observation group ``amp`` ``[H, 34]`` that adversarial motion priors read
    (``envs.mdp.amp``: leg joint positions and velocities, base height, projected gravity, base velocities).
    A class of its own so that saved runs of the other velocity configs keep matching their schema.

    Attributes:
        amp_history_length: frames per AMP observation (2: the transition from one step to the next).
    """

    amp_history_length: int = 2


def point_mass() -> TrainConfig:
    """A 2-D point mass (pure JAX, compiles in seconds): smoke tests and tutorials."""
    return TrainConfig(
        env=PointMassConfig(num_envs=64),
        policy=PolicyConfig(actor_hidden_dims=[64, 64], critic_hidden_dims=[64, 64]),
        algorithm=AlgorithmConfig(num_mini_batches=2),
        runner=RunnerConfig(num_steps_per_env=16, max_iterations=100, save_interval=50, experiment_name="point_mass",
                            obs_groups={"actor": ["policy"], "critic": ["critic"]}),
    )


def point_mass_amp() -> TrainConfig:
    """APPO on the point mass: its task reward asks to stand still at the origin, the shipped reference motions
    (``point_mass_circle``) circle it; the style reward (70 %) makes the policy circle (see tests/test_amp.py)."""
    amp = AMPConfig(enabled=True, motion_files=["point_mass_circle"], hidden_dims=[64, 64], learning_rate=1e-3,
                    discriminator_grad_pen=1.0, task_reward_lerp=0.3)
    return TrainConfig(
        env=PointMassAMPConfig(num_envs=64),
        policy=PolicyConfig(actor_hidden_dims=[64, 64], critic_hidden_dims=[64, 64]),
        algorithm=AlgorithmConfig(num_mini_batches=2, amp_cfg=amp),
        runner=RunnerConfig(num_steps_per_env=16, max_iterations=150, save_interval=50,
                            experiment_name="point_mass_amp", obs_groups={"actor": ["policy"], "critic": ["critic"]}),
    )


def cartpole_balance() -> TrainConfig:
    """MJX cartpole balance: the small real-physics task that learns in minutes on a CPU."""
    from envs.tasks.cartpole import CartpoleConfig

    return TrainConfig(
        env=CartpoleConfig(),
        policy=PolicyConfig(actor_hidden_dims=[64, 64], critic_hidden_dims=[64, 64], init_noise_std=0.5),
        algorithm=AlgorithmConfig(num_mini_batches=2, entropy_coef=0.0),
        runner=RunnerConfig(num_steps_per_env=32, max_iterations=60, save_interval=20,
                            experiment_name="cartpole_balance"),
    )


# The one-run recipe's hand-over from stepping to command following, in global control steps.
WALK_RAMP_START, WALK_RAMP_STEPS = 24_000, 12_000
# Iteration 2500 at 24 control steps per env: the linear-velocity tracking weight steps from 10 to 15.
TRACK_STEP_START = 60_000


def t1_velocity() -> TrainConfig:
    """The T1 walking recipe in one run: AGILE's T1 task (robot, actuators, observations, actions, randomisation,
    pushes, terminations) and PPO settings with a 1.5 Hz gait clock whose phase joins the observations and Booster
    Gym's swing reward, folded from the staged runs that first walked (``docs/walking_recipe.md``):

    - stepping first: ``feet_swing`` 30, paid at every non-zero command (``min_command`` 0; the sampler zeroes
      commands under 0.1, so in training this is Booster Gym's gate, and a zero command is never paid), a clock that
      never stops (so the policy can step to catch itself while told to stand), termination penalty -10, action-rate
      penalties a tenth of AGILE's, only positive rewards, initial noise 0.3 with AGILE's entropy coefficient
      0.005 (noise 0.5 with 0.01, the staged swing run's, balanced more slowly);
    - then following the command: from control step 24 000 (iteration 1000 at 24 steps per env) to 36 000 the
      swing weight falls to 10 and the action-rate penalties rise to AGILE's (-0.5, -0.05);
    - all along: linear-velocity tracking at width 0.25 and weight 10, yaw-rate tracking at width 1.0, and a
      mirror loss that keeps the policy left-right symmetric;
    - from control step 60 000 (iteration 2500) the linear tracking weight is 15, which takes the forward drift out
      of the gait (standing still, walking backward), and the yaw-rate term narrows to width 0.5 at weight 10, which
      keeps the turning that the heavier linear term would otherwise starve; MuJoCo Playground's ``stand_still``
      cost turns on too (weight -5: the leg joints' distance from the default pose at a zero command), which in a
      run that had missed on both took the standing drift out and kept the turning.
    """
    cfg = t1_velocity_airtime()
    cfg.env.reward_set, cfg.env.gait_clock_hz, cfg.env.gait_clock_stand_below = "walk_swing", 1.5, 0.0
    cfg.env.only_positive_rewards = True
    cfg.env.reward_params = {"feet_swing": {"min_command": 0.0}}
    ramp = {"start_step": WALK_RAMP_START, "num_steps": WALK_RAMP_STEPS}
    cfg.env.reward_ramps = {"feet_swing": {**ramp, "weight": 10.0}, "action_rate": {**ramp, "weight": -0.5},
                            "action_rate_rate": {**ramp, "weight": -0.05},
                            "track_lin_vel_xy_exp": {"start_step": TRACK_STEP_START, "num_steps": 1, "weight": 15.0},
                            "track_ang_vel": {"start_step": TRACK_STEP_START, "num_steps": 1, "weight": 10.0},
                            "stand_still": {"start_step": TRACK_STEP_START, "num_steps": 1, "weight": -5.0}}
    cfg.env.reward_param_steps = {"track_ang_vel": {"start_step": TRACK_STEP_START, "params": {"std": 0.5}}}
    cfg.policy.init_noise_std = 0.3
    _follow_commands(cfg)
    cfg.runner.experiment_name = "t1_velocity"
    return cfg


def _follow_commands(cfg: TrainConfig) -> None:
    """The settings that made the staged runs follow the commands (``docs/walking_recipe.md``, stages C-F): yaw
    tracking at width 1.0, linear tracking at width 0.25 and weight 10, and a mirror loss (coefficient 1.0)."""
    cfg.env.reward_weights = {**cfg.env.reward_weights, "track_lin_vel_xy_exp": 10.0}
    cfg.env.reward_params = {**cfg.env.reward_params, "track_ang_vel": {"std": 1.0},
                             "track_lin_vel_xy_exp": {"std": 0.25}}
    cfg.algorithm.symmetry_cfg.use_mirror_loss = True
    cfg.algorithm.symmetry_cfg.mirror_loss_coeff = 1.0


def t1_velocity_airtime() -> TrainConfig:
    """The first walking recipe without a clock: AGILE's T1 task with the reward changes of ``walking_rewards``
    (``env.reward_set=walk``: wider tracking kernels, a tenth of the action-rate penalties, Isaac Lab's air-time
    term) and half AGILE's initial action noise (0.5: Isaac Lab's humanoids start at 1.0 with half our action
    scale). It balances but does not step within 500 iterations (``docs/walking_recipe.md``, "No clock"); the
    staged swing runs and the method presets build on it."""
    cfg = t1_velocity_agile()
    cfg.env.reward_set = "walk"
    cfg.policy.init_noise_std = 0.5
    cfg.runner.experiment_name = "t1_velocity_airtime"
    return cfg


def t1_velocity_swing() -> TrainConfig:
    """``t1_velocity_airtime`` with a gait clock and Booster Gym's swing reward (``env.reward_set=walk_swing``:
    ``feet_swing`` weight 30 on a 1.5 Hz clock whose phase joins the observations, termination penalty -10),
    legged_gym's ``only_positive_rewards`` and entropy coefficient 0.01 (legged_gym's and Isaac Lab's humanoids'):
    the variant that keeps stepping while it learns to balance (``docs/walking_recipe.md``)."""
    cfg = t1_velocity_airtime()
    cfg.env.reward_set = "walk_swing"
    cfg.env.gait_clock_hz = 1.5
    cfg.env.only_positive_rewards = True
    cfg.algorithm.entropy_coef = 0.01
    cfg.runner.experiment_name = "t1_velocity_swing"
    return cfg


def t1_velocity_track() -> TrainConfig:
    """The second stage of the swing recipe, started from a ``t1_velocity_swing`` run that steps
    (``init_from=<that run> init_from_max_std=0.35``): the clock stops at a zero command (so the robot stands
    there), the swing reward drops to 10, AGILE's action-rate weights return, the yaw-rate tracking width widens to
    1.0 (a gait whose yaw rate swings by 1 rad/s still feels its gradient), rewards are no longer clipped, a
    mirror loss restores the left-right symmetry that the new clock input breaks, and the linear-velocity tracking
    term is narrowed to width 0.25 at weight 10 (at width 0.5 half the commanded speed already earns 85 % of it)
    (``docs/walking_recipe.md``: stages A-F; the shipped ``policies/t1_velocity`` is F)."""
    cfg = t1_velocity_swing()
    cfg.env.gait_clock_stand_below = 0.1
    cfg.env.only_positive_rewards = False
    cfg.env.reward_weights = {"feet_swing": 10.0, "action_rate": -0.5, "action_rate_rate": -0.05}
    cfg.algorithm.entropy_coef = 0.005
    _follow_commands(cfg)
    cfg.runner.experiment_name = "t1_velocity_track"
    return cfg


def t1_velocity_agile() -> TrainConfig:
    """AGILE's T1 velocity task with AGILE's ``T1VelocityPpoRunnerCfg`` exactly as in its repository (neutral
    terminations with the -100 termination penalty; no reward normalisation, no L2C2) on the MJX Booster T1.

    With the initial action noise 1.0 the policy first learns to fall at once (episode length 18 -> 6 within 25
    iterations), then recovers as its std falls; on 256 CPU envs it passes the zero-action line (34.5 steps) near
    iteration 290 and balances by iteration 4000 without stepping (``benchmarks/learning_t1.md``). AGILE v1.3 runs
    this config on rsl-rl-lib 5.4.1, which clips the actor's and the critic's gradient norms separately
    (``grad_clip_mode="per_network"``); v1.0's vendored RSL-RL 2.3.3 clipped one joint norm
    (``algorithm.grad_clip_mode=joint``). See ``docs/t1_audit.md``, "PPO settings".
    """
    alg = AlgorithmConfig(learning_rate=1e-3, num_learning_epochs=5, num_mini_batches=4, schedule="adaptive",
                          desired_kl=0.01, clip_param=0.2, gamma=0.99, lam=0.95, value_loss_coef=1.0,
                          entropy_coef=0.005, max_grad_norm=1.0, use_clipped_value_loss=True,
                          grad_clip_mode="per_network")
    alg.symmetry_cfg.enabled, alg.symmetry_cfg.use_data_augmentation = True, True
    return TrainConfig(
        env=VelocityEnvConfig(robot="t1"),
        policy=PolicyConfig(init_noise_std=1.0, actor_hidden_dims=[256, 256, 128],
                            critic_hidden_dims=[512, 256, 128], activation="elu"),
        algorithm=alg,
        runner=RunnerConfig(seed=42, num_steps_per_env=24, max_iterations=100_000, save_interval=250,
                            experiment_name="t1_velocity_agile",
                            obs_groups={"actor": ["policy"], "critic": ["critic"]},
                            init_at_random_ep_len=True, enable_entropy_coef_annealing=True,
                            entropy_coef_annealing_start_progress=0.3,
                            enable_entropy_coef_annealing_success_rate=0.8, entropy_annealing_decay_rate=0.9995),
    )


def t1_velocity_bad() -> TrainConfig:
    """``t1_velocity_agile`` with falls bootstrapped as bad terminations (sigma 5), AGILE's remedy for agents that
    learn to fall: no learn-to-fall dip, but the bootstrap's value target ``(r - sigma) / (1 - gamma)`` grows
    without bound under the clipped value loss, which slows learning and destabilises long runs."""
    cfg = t1_velocity_agile()
    cfg.env.termination_type, cfg.env.termination_sigma = "bad", 5.0
    cfg.runner.experiment_name = "t1_velocity_bad"
    return cfg


def t1_velocity_seed() -> TrainConfig:
    """``t1_velocity_agile`` with the PPO extensions of the ``T1VelocityPpoRunnerCfg`` printed on AGILE's project
    page: return-variance reward normalisation (decay 0.999, epsilon 1e-2) and L2C2 (lambda 1.0 actor / 0.1
    critic)."""
    cfg = t1_velocity_agile()
    rn = cfg.algorithm.reward_normalization_cfg
    rn.enabled, rn.decay, rn.epsilon = True, 0.999, 1e-2
    l2c2 = cfg.algorithm.l2c2_cfg
    l2c2.enabled, l2c2.lambda_actor, l2c2.lambda_critic = True, 1.0, 0.1
    cfg.runner.experiment_name = "t1_velocity_seed"
    return cfg


def g1_velocity() -> TrainConfig:
    """The T1 walking recipe (``t1_velocity``: gait clock, swing reward, its schedules, the mirror loss) on AGILE's
    G1 velocity task. The G1's action scale is 0.5 (the T1's 1.0), so the initial noise is doubled to 0.6: the
    same joint-space noise as the T1's 0.3. Where the linear tracking weight steps to 15 the yaw-rate tracking
    weight steps from 5 to 7.5: without it the G1's turning fades to a third of the command
    (``benchmarks/learning_g1.md``)."""
    cfg = t1_velocity()
    cfg.env.robot = "g1"
    cfg.policy.init_noise_std = 0.6
    cfg.env.reward_ramps = {**cfg.env.reward_ramps,
                            "track_ang_vel": {"start_step": TRACK_STEP_START, "num_steps": 1, "weight": 7.5}}
    cfg.env.reward_param_steps = {}  # the G1's recipe was measured with the yaw-rate width at 1.0 all along
    del cfg.env.reward_ramps["stand_still"]  # and without the stand-still cost
    cfg.runner.experiment_name = "g1_velocity"
    return cfg


def g1_velocity_agile() -> TrainConfig:
    """AGILE's G1 velocity task and PPO settings exactly (``t1_velocity_agile`` on the G1)."""
    cfg = t1_velocity_agile()
    cfg.env.robot = "g1"
    cfg.runner.max_iterations = 50_000
    cfg.runner.experiment_name = "g1_velocity_agile"
    return cfg


def t1_velocity_rough() -> TrainConfig:
    """``t1_velocity_airtime`` on rough terrain with the terrain-level curriculum (see ``RoughVelocityEnvConfig``)."""
    cfg = t1_velocity_airtime()
    cfg.env = RoughVelocityEnvConfig(**dataclasses.asdict(cfg.env))
    cfg.runner.experiment_name = "t1_velocity_rough"
    return cfg


def t1_velocity_teacher() -> TrainConfig:
    """A privileged T1 teacher: the actor sees the critic's observations (base velocity, all joints, no noise).

    Distil it into a deployable student on the policy history with
    ``python experiments/distill.py config=t1_velocity_airtime teacher=<run>/exported/policy.onnx``.
    """
    cfg = t1_velocity_airtime()
    cfg.runner.obs_groups = {"actor": ["critic"], "critic": ["critic"]}
    cfg.runner.experiment_name = "t1_velocity_teacher"
    return cfg


def t1_velocity_estimator() -> TrainConfig:
    """``t1_velocity_airtime`` with st_rl's state estimator: an MLP on the policy history estimates the base linear
    velocity (the critic's ``base_lin_vel``, 3 values), trained with an MSE loss, and the actor reads the
    estimate after its observations; the exported policy runs estimator and actor on the same observation."""
    cfg = t1_velocity_airtime()
    ec = cfg.algorithm.estimator_cfg
    ec.enabled, ec.obs_components, ec.target_components = True, ["policy"], ["base_lin_vel"]
    ec.loss_func, ec.loss_coef, ec.hidden_dims = "mse", 1.0, [256, 128]
    cfg.runner.experiment_name = "t1_velocity_estimator"
    return cfg


def t1_velocity_tppo() -> TrainConfig:
    """``t1_velocity_airtime`` with st_rl's TPPO: the teacher in ``algorithm.tppo_cfg.teacher_policy`` (required;
    e.g. the exported ``t1_velocity_teacher``, which reads the critic observation) labels every step on the critic
    observation and acts in every env at first; each env hands over to the student at an episode end with
    probability ``1 - 0.99 ** it`` (st_rl's ``exp`` schedule, ``update_times_scale`` 100), and the student learns
    from PPO plus the L2 distance (``real``) of its mean to the labels. Add ``algorithm.estimator_cfg`` (see
    ``t1_velocity_estimator``) and ``algorithm.class_name=EstimatorTPPO`` for st_rl's EstimatorTPPO."""
    cfg = t1_velocity_airtime()
    cfg.algorithm.class_name = "TPPO"
    tc = cfg.algorithm.tppo_cfg
    tc.label_action_with_critic_obs, tc.teacher_act_prob, tc.update_times_scale = True, "exp", 100
    tc.distillation_loss_coef, tc.distill_target, tc.using_ppo = 1.0, "real", True
    cfg.runner.experiment_name = "t1_velocity_tppo"
    return cfg


def t1_velocity_rough_cnn() -> TrainConfig:
    """``t1_velocity_rough`` whose actor and critic also read the height scan ``[1, 11, 17]``, each through a CNN
    (``policy.class_name=ActorCriticCNN``: RSL-RL's ``CNNModel``; 16 and 32 channels of 3x3 stride-2 convolutions,
    a 256-wide latent after the policy history)."""
    cfg = t1_velocity_rough()
    cfg.env = RoughScanVelocityEnvConfig(**dataclasses.asdict(cfg.env))
    cfg.policy.class_name = "ActorCriticCNN"
    cfg.policy.actor_cnn_cfg = {"output_channels": [16, 32], "kernel_size": 3, "stride": 2, "padding": "zeros",
                                "norm": "none", "activation": "elu", "max_pool": False, "global_pool": "none",
                                "flatten": True}
    cfg.runner.obs_groups = {"actor": ["policy", "height_scan"], "critic": ["critic", "height_scan"]}
    cfg.runner.experiment_name = "t1_velocity_rough_cnn"
    return cfg


def t1_velocity_ts() -> TrainConfig:
    """``t1_velocity_airtime`` with LeggedGym-Ex's teacher-student PPO (``PPO_TS``, its go2_ts settings): a privilege
    encoder on the critic observation gives a latent as wide as that observation, which the actor reads after the
    policy history; a history encoder on the policy history (five frames) learns to match it with its own Adam
    (``encoder_lr`` 1e-3, one step per minibatch). The teacher acts in training; the student (history encoder +
    actor, on the policy observation alone) is what evaluation and export use."""
    cfg = t1_velocity_airtime()
    tc = cfg.algorithm.ts_cfg
    tc.enabled, tc.num_latent_dims, tc.encoder_lr, tc.num_encoder_epochs = True, -1, 1e-3, 1
    tc.privilege_encoder_hidden_dims, tc.history_encoder_hidden_dims = [256, 128], [256, 128]
    cfg.runner.obs_groups = {"actor": ["policy"], "critic": ["critic"], "privileged": ["critic"],
                             "history": ["policy"]}
    cfg.runner.experiment_name = "t1_velocity_ts"
    return cfg


def t1_velocity_amp() -> TrainConfig:
    """``t1_velocity_airtime`` with st_rl's APPO: a discriminator on two-frame AMP observations of the legs and base
    (``AmpVelocityEnvConfig``) against the shipped scripted T1 gait (``t1_gait``: standing, stepping, walking
    forward at 0.25 / 0.5 m/s and backward at 0.25 m/s); the reward is 0.3 x style (coefficient 0.25 per step)
    + 0.7 x task. A starting point: these weights have not been tuned on long T1 runs."""
    cfg = t1_velocity_airtime()
    cfg.env = AmpVelocityEnvConfig(**dataclasses.asdict(cfg.env))
    ac = cfg.algorithm.amp_cfg
    ac.enabled, ac.motion_files, ac.hidden_dims, ac.learning_rate = True, ["t1_gait"], [1024, 512], 1e-4
    ac.style_reward_coef, ac.task_reward_lerp, ac.discriminator_grad_pen = 0.25, 0.7, 5.0
    cfg.runner.experiment_name = "t1_velocity_amp"
    return cfg


PRESETS: dict[str, Callable[[], TrainConfig]] = {
    "point_mass": point_mass,
    "point_mass_amp": point_mass_amp,
    "cartpole_balance": cartpole_balance,
    "t1_velocity": t1_velocity,
    "t1_velocity_airtime": t1_velocity_airtime,
    "t1_velocity_swing": t1_velocity_swing,
    "t1_velocity_track": t1_velocity_track,
    "t1_velocity_agile": t1_velocity_agile,
    "t1_velocity_bad": t1_velocity_bad,
    "t1_velocity_seed": t1_velocity_seed,
    "t1_velocity_rough": t1_velocity_rough,
    "t1_velocity_rough_cnn": t1_velocity_rough_cnn,
    "t1_velocity_teacher": t1_velocity_teacher,
    "t1_velocity_estimator": t1_velocity_estimator,
    "t1_velocity_tppo": t1_velocity_tppo,
    "t1_velocity_amp": t1_velocity_amp,
    "t1_velocity_ts": t1_velocity_ts,
    "g1_velocity": g1_velocity,
    "g1_velocity_agile": g1_velocity_agile,
}

# Overrides a preset takes when JAX has no accelerator (``experiments/train.py`` prints them; the user's own
# overrides win): the walking recipe on a 2-core CPU (``benchmarks/learning_t1.md``).
CPU_DEFAULTS: dict[str, list[str]] = {
    "t1_velocity": ["num_envs=256", "runner.max_iterations=2700"],  # where the run walked (walking_recipe.md)
    "t1_velocity_airtime": ["num_envs=256", "runner.max_iterations=3000"],
    "g1_velocity": ["num_envs=256", "runner.max_iterations=2750"],  # the T1's budget (benchmarks/learning_g1.md)
    "t1_velocity_swing": ["num_envs=256", "runner.max_iterations=3000"],
    "t1_velocity_track": ["num_envs=256", "runner.max_iterations=3000"],
}


def _velocity_env(cfg: VelocityEnvConfig):
    """The single-env velocity task with the command-line knobs applied to AGILE's defaults."""
    from envs.mdp import gait
    from envs.tasks import velocity

    bases = {"t1": velocity.T1VelocityConfig, "g1": velocity.G1VelocityConfig}
    if cfg.robot not in bases:
        raise ConfigError(f"unknown env.robot '{cfg.robot}', expected one of {sorted(bases)}")
    base = bases[cfg.robot]()
    domain = dataclasses.replace(base.domain, randomize=cfg.domain_randomization, push=cfg.pushes,
                                 wrench=cfg.wrenches)
    commands = dataclasses.replace(base.commands, lin_vel_x=tuple(cfg.lin_vel_x), lin_vel_y=tuple(cfg.lin_vel_y),
                                   ang_vel_z=tuple(cfg.ang_vel_z), rel_standing_envs=cfg.rel_standing_envs)
    if cfg.termination_type not in ("neutral", "bad", "good"):
        raise ConfigError(f"env.termination_type='{cfg.termination_type}', expected 'neutral', 'bad' or 'good'")
    terminations = {name: (cfg.termination_type, cfg.termination_sigma) for name in base.termination_types}
    rewards, curricula = _reward_tables(cfg)
    param_steps = {name: _param_step(name, step, rewards) for name, step in cfg.reward_param_steps.items()}
    if bool(set(rewards) & {"feet_phase", "feet_swing"}) != (cfg.gait_clock_hz > 0):
        raise ConfigError(f"env.reward_set='{cfg.reward_set}' with env.gait_clock_hz={cfg.gait_clock_hz}: the "
                          "gait-clock rewards (feet_phase, feet_swing) and the gait clock go together "
                          "(reward_set=walk_swing gait_clock_hz=1.5)")
    if cfg.gait_clock_stand_below < 0:
        raise ConfigError(f"env.gait_clock_stand_below={cfg.gait_clock_stand_below} is out of range: use a command "
                          "norm >= 0 (0.1: the clock stops at a zero command)")
    if not 0.0 < cfg.tilt_limit_deg <= 180.0:
        raise ConfigError(f"env.tilt_limit_deg={cfg.tilt_limit_deg} is out of range: use degrees in (0, 180] "
                          "(AGILE: 30)")
    if cfg.solver_iterations < 1:
        raise ConfigError(f"env.solver_iterations={cfg.solver_iterations} is out of range: use an integer >= 1 "
                          "(10 lets the solver converge)")
    clock = gait.GaitClockConfig(frequency=cfg.gait_clock_hz, stand_below=cfg.gait_clock_stand_below) \
        if cfg.gait_clock_hz > 0 else None
    task = dataclasses.replace(base, rewards=rewards, curricula=curricula, param_steps=param_steps,
                               gait_clock=clock, impl=cfg.impl,
                               only_positive_rewards=cfg.only_positive_rewards,
                               privileged_critic=cfg.privileged_critic,
                               limit_angle=math.radians(cfg.tilt_limit_deg),
                               episode_length_s=cfg.episode_length_s, obs_noise=cfg.obs_noise,
                               random_arm_motion=cfg.random_arm_motion, domain=domain, commands=commands,
                               termination_types=terminations, terrain=_terrain(cfg),
                               solver=dataclasses.replace(base.solver, iterations=cfg.solver_iterations))
    if isinstance(cfg, RoughScanVelocityEnvConfig):  # the 2-D height-scan observation group
        task = dataclasses.replace(task, height_scanner=_height_scanner(cfg))
    if isinstance(cfg, AmpVelocityEnvConfig):  # the AMP observation group
        if cfg.amp_history_length < 1:
            raise ConfigError(f"env.amp_history_length={cfg.amp_history_length} is out of range: use an integer >= 1")
        task = dataclasses.replace(task, amp_history_length=cfg.amp_history_length)
    return velocity.VelocityEnv(velocity.sized_for_batch(task, cfg.num_envs))


def _reward_tables(cfg: VelocityEnvConfig) -> tuple[dict, dict]:
    """The reward table and weight curricula of ``cfg.reward_set`` with the per-term overrides applied."""
    from envs.tasks import velocity

    if (cfg.robot, cfg.reward_set) not in velocity.REWARD_SETS:
        sets = sorted({name for _, name in velocity.REWARD_SETS})
        raise ConfigError(f"env.reward_set='{cfg.reward_set}' is unknown: use one of {sets}")
    table, curricula = velocity.REWARD_SETS[(cfg.robot, cfg.reward_set)]
    table, curricula = dict(table), dict(curricula)
    for kind, overrides in (("reward_weights", cfg.reward_weights), ("reward_params", cfg.reward_params)):
        for name, value in overrides.items():
            if name not in table:
                raise ConfigError(f"env.{kind}.{name}: no reward term '{name}' in env.reward_set="
                                  f"'{cfg.reward_set}'; terms: {sorted(table)}")
            if kind == "reward_weights":
                table[name] = dataclasses.replace(table[name], weight=float(value))
                curricula.pop(name, None)  # an explicit weight replaces the term's ramp
            else:
                unknown = set(value) - set(table[name].params)
                if unknown:
                    raise ConfigError(f"env.reward_params.{name}: unknown parameter(s) {sorted(unknown)}; "
                                      f"'{name}' takes {sorted(table[name].params)}")
                table[name] = dataclasses.replace(table[name], params={**table[name].params, **value})
    for name, ramp in cfg.reward_ramps.items():
        curricula[name] = _weight_ramp(name, ramp, table)
    return table, curricula


def _weight_ramp(name: str, ramp: Any, table: dict):
    """``env.reward_ramps.<name>`` as a :class:`envs.mdp.terms.WeightRamp`, checked."""
    from envs.mdp.terms import WeightRamp

    fix = f"e.g. 'env.reward_ramps.{name}={{start_step: 24000, num_steps: 12000, weight: 10.0}}'"
    if name not in table:
        raise ConfigError(f"env.reward_ramps.{name}: no reward term '{name}' in this reward set; "
                          f"terms: {sorted(table)}")
    keys = {"start_step", "num_steps", "weight"}
    if not isinstance(ramp, dict) or set(ramp) != keys or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in ramp.values()):
            raise ConfigError(f"env.reward_ramps.{name}={ramp!r}: give exactly start_step, num_steps and weight as "
                          f"numbers; {fix}")
    if ramp["start_step"] < 0 or ramp["num_steps"] <= 0:
        raise ConfigError(f"env.reward_ramps.{name}: start_step must be >= 0 and num_steps > 0; {fix}")
    if table[name].weight == 0.0 and ramp["weight"] == 0.0:
        raise ConfigError(f"env.reward_ramps.{name}: the term's weight is 0 and the ramp's too, which removes it; "
                          f"give the ramp a non-zero weight (or the term one with env.reward_weights.{name})")
    return WeightRamp(int(ramp["start_step"]), int(ramp["num_steps"]), float(ramp["weight"]))


def _param_step(name: str, step: Any, table: dict):
    """``env.reward_param_steps.<name>`` as a :class:`envs.mdp.terms.ParamStep`, checked."""
    from envs.mdp.terms import ParamStep

    fix = f"e.g. 'env.reward_param_steps.{name}={{start_step: 60000, params: {{std: 0.5}}}}'"
    if name not in table:
        raise ConfigError(f"env.reward_param_steps.{name}: no reward term '{name}' in this reward set; "
                          f"terms: {sorted(table)}")
    start = step.get("start_step") if isinstance(step, dict) else None
    if (not isinstance(step, dict) or set(step) != {"start_step", "params"} or not isinstance(step["params"], dict)
            or not isinstance(start, int) or isinstance(start, bool) or start < 0):
        raise ConfigError(f"env.reward_param_steps.{name}={step!r}: give exactly start_step (an integer >= 0) and "
                          f"params (a mapping); {fix}")
    unknown = set(step["params"]) - set(table[name].params)
    if unknown:
        raise ConfigError(f"env.reward_param_steps.{name}: unknown parameter(s) {sorted(unknown)}; "
                          f"'{name}' takes {sorted(table[name].params)}")
    return ParamStep(start, dict(step["params"]))


def _terrain(cfg: VelocityEnvConfig):
    """The task's terrain config: ``None`` (flat) unless ``cfg`` is a :class:`RoughVelocityEnvConfig`."""
    if not isinstance(cfg, RoughVelocityEnvConfig):
        return None
    from envs import terrain

    rough = terrain.TerrainConfig(num_rows=cfg.terrain_rows, num_cols=cfg.terrain_cols,
                                  tile_size=cfg.terrain_tile_size, max_init_level=cfg.terrain_max_init_level,
                                  seed=cfg.terrain_seed, max_contact_points=cfg.terrain_max_contact_points or None)
    try:
        terrain.validate(rough)
    except ValueError as err:
        raise ConfigError(f"env.terrain_*: {err}") from err
    return rough


def _height_scanner(cfg: RoughScanVelocityEnvConfig):
    """The task's height scanner (Isaac Lab's offset, noise and clip) from the command-line grid settings."""
    from envs.mdp.height_scan import HeightScannerConfig

    size = list(cfg.height_scan_size)
    if len(size) != 2 or min(size) < 0 or cfg.height_scan_resolution <= 0:
        raise ConfigError(f"env.height_scan_resolution={cfg.height_scan_resolution} must be positive and "
                          f"env.height_scan_size={size} two lengths >= 0 [x, y] (Isaac Lab: 0.1, [1.6, 1.0])")
    return HeightScannerConfig(resolution=cfg.height_scan_resolution, size=tuple(size))


def _check_single_device(num_devices: int) -> None:
    """MuJoCo Warp shares one contact buffer over the env batch, which cannot be split over devices."""
    import jax

    if (num_devices or len(jax.devices())) > 1:
        raise ConfigError("env.impl=warp trains on one device (its contact buffer spans the whole env batch); "
                          "set runner.num_devices=1")


def _cartpole_env(cfg):
    from envs.tasks.cartpole import CartpoleBalance

    return CartpoleBalance(cfg)


ENV_FACTORIES: dict[str, Callable] = {
    "PointMassConfig": PointMass,
    "PointMassAMPConfig": PointMassAMP,
    "CartpoleConfig": _cartpole_env,
    "VelocityEnvConfig": _velocity_env,
    "RoughVelocityEnvConfig": _velocity_env,
    "RoughScanVelocityEnvConfig": _velocity_env,
    "AmpVelocityEnvConfig": _velocity_env,
}


def make_env(cfg: TrainConfig) -> VecEnv:
    """Builds the single env of ``cfg.env`` and batches it over ``cfg.env.num_envs``."""
    name = type(cfg.env).__name__
    if name not in ENV_FACTORIES:
        raise ConfigError(f"no environment is registered for env config {name}; known: {sorted(ENV_FACTORIES)}")
    if getattr(cfg.env, "impl", "jax") == "warp":
        _check_single_device(cfg.runner.num_devices)
    single = ENV_FACTORIES[name](cfg.env)
    return VecEnv(single, cfg.env.num_envs, init_at_random_ep_len=cfg.runner.init_at_random_ep_len)
