"""AGILE's velocity-tracking task (``Velocity-T1-v0`` and ``Velocity-G1-History-v0``) in MJX, flat or rough.

One :class:`VelocityEnv` class implements both robots; :class:`T1VelocityConfig` and :class:`G1VelocityConfig`
give AGILE's tables. The env is a single, pure environment (``reset(key)``, ``step(state, action)``); batch it
with :class:`envs.core.VecEnv`. Per control step (50 Hz = 4 physics steps of 5 ms):

1. leg targets ``clip(default + scale * a)`` (Isaac Lab clips the processed target), arms/head follow the
   random-target motion, the waist (T1) is held at its default;
2. each physics step runs the delayed DC-motor PD (:mod:`envs.mdp.actuators`) and ``mjx.step``;
3. terminations and rewards (weights x dt) are computed, then commands are resampled, pushes and
   external wrenches fire, and observations are taken.

Observation layout (per frame, oldest -> newest over the ``[H, 45]`` policy history; AGILE's term-major
export order is :func:`envs.mdp.observations.term_major`):

* policy ``[5, 45]``: base_ang_vel x0.2 (3), projected_gravity (3), velocity_commands (3),
  joint_pos_rel of the action joints (12), joint_vel_rel x0.05 (12), last action (12); noise before scale;
* critic ``[70]``: velocity_commands (3), base_lin_vel (3), base_ang_vel (3), projected_gravity (3),
  joint_pos_rel of all joints (23), joint_vel_rel x0.1 (23), last action (12); no noise.
* height_scan ``[1, 11, 17]`` (with ``cfg.height_scanner``): Isaac Lab's height scan as a 2-D grid
  (:mod:`envs.mdp.height_scan`), for CNN encoders; noisy when the policy observations are.

Rough terrain (``cfg.terrain``, :mod:`envs.terrain`): a heightfield replaces the floor plane, each episode
starts on a tile of its current level (``info["terrain_level"]``, ``info["terrain_col"]``), base height and
contacts are measured above the terrain, and :meth:`VelocityEnv.carry_over` applies the terrain-level
curriculum (:mod:`envs.mdp.curriculum`) when ``VecEnv`` auto-resets an env.

State carried in ``info``: ``rng``, ``command``/``command_time`` (s to resample), ``last_action``,
``prev_action_rate``, ``delay`` (physics steps per joint), ``delay_line``, ``fresh`` (first step of an
episode), ``motion`` (random arm motion), ``domain`` (per-env model parameters, see
:mod:`envs.mdp.events`), ``push_time``/``wrench_time``/``wrench`` (interval events), ``history`` (policy
frames), ``root_vel`` (for the root acceleration), ``feet_air_time``/``feet_contact_time`` (per-foot gait timers),
``common_step`` (global control step for the curricula;
write it with :func:`set_common_step`); on rough terrain also ``terrain_level``/``terrain_col``,
``curriculum_successes``/``curriculum_failures`` (carried across resets) and ``travelled``/``segment_start``
(the episode's travelled distance, :mod:`envs.mdp.curriculum`).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import mujoco
import numpy as np
from mujoco import mjx

from agile_jax.types import Array, PRNGKey
from envs import mjx_impl
from envs import terrain as terrain_lib
from envs.core import EnvState, TerminationSpec
from envs.mdp import actuators, commands, curriculum, events, gait, height_scan, random_motion, rewards, symmetry, terms
from envs.mdp import amp as amp_obs
from envs.mdp import locomotion as loco
from envs.mdp import observations as obs_terms
from envs.mdp import privileged as privileged_obs
from envs.mdp.rewards import Signals
from envs.mdp.terms import ParamStep, RewardTerm, WeightRamp
from envs.robots import assets, g1, registry, t1
from envs.robots.robot import Robot

_T1_LEGS = t1.LEG_JOINTS
_G1_CTRL = g1.CONTROLLED_JOINTS
T1_REWARDS = {
    "termination_penalty": RewardTerm("is_terminated", -100.0),
    "track_lin_vel_xy_exp": RewardTerm("track_lin_vel_xy_exp", 5.0, {"std": 0.2}),
    "track_ang_vel": RewardTerm("track_ang_vel_z_exp", 5.0, {"std": 0.2}),
    "base_height": RewardTerm("base_height_exp", 2.0, {"target_height": t1.DEFAULT_TRUNK_HEIGHT, "std": 0.1}),
    "orientation": RewardTerm("flat_orientation_l2", -5.0),
    "torques": RewardTerm("joint_torques_l2", -1e-4, {"joints": _T1_LEGS}),
    "ankle_torques": RewardTerm("joint_torques_l2", -1e-4, {"joints": (".*Ankle.*",)}),
    "ankle_roll_torques": RewardTerm("joint_torques_l2", -2e-3, {"joints": (".*Ankle_Roll",)}),
    "lin_vel_z": RewardTerm("lin_vel_z_l2", -0.5),
    "ang_vel_xy": RewardTerm("ang_vel_xy_l2", -0.5),
    "dof_vel": RewardTerm("joint_vel_l2", -2e-4, {"joints": (".*",)}),
    "action_rate": RewardTerm("action_rate_l2", -0.5),
    "action_rate_rate": RewardTerm("action_rate_rate_l2", -0.05),
    "dof_pos_limits": RewardTerm("joint_pos_limits", -1.0, {"joints": (".*",)}),
    "dof_vel_limits": RewardTerm("joint_vel_limits", -1.0, {"joints": (".*",), "soft_ratio": 0.9}),
    "torque_limits": RewardTerm("applied_torque_limits", -0.01, {"joints": (".*",)}),
    "collision": RewardTerm("undesired_contacts", -0.2),
    "feet_slip": RewardTerm("feet_slip", -0.1),
    "feet_roll": RewardTerm("feet_roll_l2", -0.1),
    "feet_yaw_diff": RewardTerm("feet_yaw_diff_l2", -0.2),
    "feet_yaw_mean": RewardTerm("feet_yaw_mean_vs_base", -4.0),
    "root_acc": RewardTerm("body_acc_l2", -2e-5),
    "feet_distance": RewardTerm("feet_distance_from_ref", -0.2, {"ref_distance": 0.2}),
}
G1_REWARDS = {
    "termination_penalty": RewardTerm("is_terminated", -100.0),
    "track_lin_vel_xy_exp": RewardTerm("track_lin_vel_xy_exp", 5.0, {"std": 0.2}),
    "track_ang_vel": RewardTerm("track_ang_vel_z_exp", 5.0, {"std": 0.2}),
    "base_height": RewardTerm("base_height_exp", 2.5, {"target_height": g1.DEFAULT_PELVIS_HEIGHT, "std": 0.1}),
    "orientation": RewardTerm("flat_body_orientation_exp", 5.0, {"std": float(np.radians(10.0))}),
    "torques": RewardTerm("joint_torques_l2", -5e-5, {"joints": _G1_CTRL}),
    "ankle_torques": RewardTerm("joint_torques_l2", -1e-4, {"joints": (".*ankle.*",)}),
    "ankle_roll_torques": RewardTerm("joint_torques_l2", -1e-3, {"joints": (".*ankle_roll.*",)}),
    "lin_vel_z": RewardTerm("lin_vel_z_l2", -0.25),
    "ang_vel_xy": RewardTerm("ang_vel_xy_l2", -0.25),
    "dof_vel": RewardTerm("joint_vel_l2", -1e-4, {"joints": _G1_CTRL}),
    "action_rate": RewardTerm("action_rate_l2", -0.25),
    "action_rate_rate": RewardTerm("action_rate_rate_l2", -0.025),
    "dof_pos_limits": RewardTerm("joint_pos_limits", -0.5, {"joints": _G1_CTRL}),
    "dof_vel_limits": RewardTerm("joint_vel_limits", -0.5, {"joints": _G1_CTRL, "soft_ratio": 0.9}),
    "torque_limits": RewardTerm("applied_torque_limits", -0.005, {"joints": _G1_CTRL}),
    "feet_slip": RewardTerm("feet_slip", -0.05),
    "feet_roll": RewardTerm("feet_roll_l2", -0.05),
    "feet_yaw_diff": RewardTerm("feet_yaw_diff_l2", -0.1),
    "feet_yaw_mean": RewardTerm("feet_yaw_mean_vs_base", -2.0),
    "root_acc": RewardTerm("body_acc_l2", -1e-5),
    "feet_distance": RewardTerm("feet_distance_from_ref", -0.1, {"ref_distance": 0.2}),
    "jumping": RewardTerm("jumping", -20.0),
}



def walking_rewards(agile: Mapping[str, RewardTerm], air_time_weight: float) -> dict[str, RewardTerm]:
    """AGILE's reward table changed so that stepping is learned early (``docs/walking_recipe.md`` has the sources
    and the ablations): Isaac Lab's velocity-tracking width (std 0.5 instead of 0.2), action-rate penalties a
    tenth of AGILE's (so exploration noise is not paid for at once), and Isaac Lab's single-stance air-time term
    gated on a non-zero command (so the robot is paid for steps when asked to move and stands still at zero), and
    MuJoCo Playground's ``stand_still`` cost at a zero command, off until given a weight."""
    table = dict(agile)
    for name in ("track_lin_vel_xy_exp", "track_ang_vel"):
        table[name] = dataclasses.replace(table[name], params={**table[name].params, "std": 0.5})
    for name in ("action_rate", "action_rate_rate"):
        table[name] = dataclasses.replace(table[name], weight=table[name].weight / 10.0)
    table["feet_air_time"] = RewardTerm("feet_air_time_positive_biped", air_time_weight,
                                        {"threshold": 0.4, "min_command": 0.1})
    # Off (weight 0) unless given a weight, e.g. env.reward_weights.stand_still=-2: the policy-driven joints.
    table["stand_still"] = RewardTerm("stand_still", 0.0, {"joints": agile["torques"].params["joints"],
                                                           "min_command": 0.1})
    return table


def clock_rewards(walk: Mapping[str, RewardTerm], phase_weight: float) -> dict[str, RewardTerm]:
    """The walking table plus MuJoCo Playground's ``feet_phase``: soles follow the gait clock's swing profile
    (needs a task with ``gait_clock``)."""
    return {**walk, "feet_phase": RewardTerm("feet_phase", phase_weight, {"swing_height": 0.08, "min_command": 0.1})}


def swing_rewards(walk: Mapping[str, RewardTerm], swing_weight: float,
                  termination_weight: float) -> dict[str, RewardTerm]:
    """The walking table plus Booster Gym's ``feet_swing``: a foot off the ground in its swing window of the gait
    clock is paid (needs a task with ``gait_clock``; Booster Gym's window, 0.2 of the cycle), and a termination
    penalty of ``termination_weight`` (Booster Gym has none, MuJoCo Playground -1 against tracking 1)."""
    table = {**walk, "feet_swing": RewardTerm("feet_swing", swing_weight, {"swing_period": 0.2, "min_command": 0.1})}
    table["termination_penalty"] = dataclasses.replace(table["termination_penalty"], weight=termination_weight)
    return table


T1_WALK_REWARDS = walking_rewards(T1_REWARDS, 3.0)
G1_WALK_REWARDS = walking_rewards(G1_REWARDS, 3.0)
T1_CURRICULA = {"action_rate": WeightRamp(50_000, 100_000, -2.0), "action_rate_rate": WeightRamp(60_000, 100_000, -1.0)}
G1_CURRICULA = {"action_rate": WeightRamp(50_000, 100_000, -1.0), "action_rate_rate": WeightRamp(60_000, 100_000, -0.5)}
# (robot, reward set) -> (reward table, weight curricula). "agile": AGILE's task exactly; "walk": the walking
# recipe, whose action-rate penalties stay at their reduced weights (AGILE's late ramps would undo them).
REWARD_SETS: dict[tuple[str, str], tuple[Mapping[str, RewardTerm], Mapping[str, WeightRamp]]] = {
    ("t1", "agile"): (T1_REWARDS, T1_CURRICULA),
    ("g1", "agile"): (G1_REWARDS, G1_CURRICULA),
    ("t1", "walk"): (T1_WALK_REWARDS, {}),
    ("g1", "walk"): (G1_WALK_REWARDS, {}),
    ("t1", "walk_clock"): (clock_rewards(T1_WALK_REWARDS, 3.0), {}),
    ("g1", "walk_clock"): (clock_rewards(G1_WALK_REWARDS, 3.0), {}),
    ("t1", "walk_swing"): (swing_rewards(T1_WALK_REWARDS, 30.0, -10.0), {}),
    ("g1", "walk_swing"): (swing_rewards(G1_WALK_REWARDS, 30.0, -10.0), {}),
}


@dataclasses.dataclass(frozen=True)
class T1VelocityConfig:
    """All knobs of the velocity task; the defaults are AGILE's ``T1LowerVelocityEnvCfg`` on flat ground.

    Attributes:
        robot: ``"t1"`` or ``"g1"``.
        impl: physics implementation, ``"jax"`` (MJX), ``"warp"`` (MuJoCo Warp), ``"c"`` (MuJoCo C on the CPU) or
            ``"auto"`` (``c`` on a CPU-only JAX backend, else ``jax``); see :mod:`envs.mjx_impl`.
        naconmax / njmax: Warp only: contact slots shared by all envs of a batch, constraint rows per env
            (:func:`sized_for_batch` sets both from the model and the batch size).
        sim_dt / decimation: physics step (s) and physics steps per control step.
        solver: MuJoCo solver options (``timestep`` is overridden by ``sim_dt``).
        episode_length_s: time limit (enforced by ``VecEnv``).
        action_scale / action_clip: leg target ``default + scale * a``, clipped to ``action_clip``.
        clip_processed_actions: clip the target (Isaac Lab ``JointAction``) instead of the raw action.
        implicit_damping: integrate the PD damping implicitly (MuJoCo joint damping + Euler damping).
        random_arm_motion: move the non-policy joints (arms, head) to random targets.
        history_length / obs_noise: policy history frames and observation corruption.
        rewards / curricula: reward table (weights before x dt) and weight ramps by global control step.
        param_steps: per-term parameter switches by global control step (:class:`envs.mdp.terms.ParamStep`).
        termination_types: ``term -> (type, sigma)`` of :class:`envs.core.TerminationSpec` (time_out excluded).
        limit_angle / base_height_threshold / illegal_contact_min_height: termination thresholds.
        contact_margin: geometric contact distance (m) for feet and trunk probes.
        orientation_bodies: bodies of the exp orientation reward.
        init_height_offset: spawn height above the resting height of the default pose (m).
        terrain: rough terrain (:class:`envs.terrain.TerrainConfig`); ``None`` is the flat floor.
        terrain_curriculum: AGILE's terrain-level curriculum (:mod:`envs.mdp.curriculum`; rough terrain only).
        height_scan: ``(half_width, points)``: the base height is measured above the mean terrain height over a
            ``points x points`` grid spanning ``+-half_width`` (m) around the root (rough terrain only); the default
            is AGILE's single ray straight under the root (``GridPatternCfg(size=(0.0, 0.0))``).
        spawn_clearance: spawn heights are above the highest terrain point within this half-width (m) of the
            root, so that no foot starts inside a bump (rough terrain only).
        height_scanner: adds the observation group ``height_scan`` ``[1, ny, nx]`` (Isaac Lab's height scanner,
            :mod:`envs.mdp.height_scan`; noisy when ``obs_noise``); ``None``: no scan.
        privileged_critic: the critic also reads the per-env randomised parameters and the external wrench on
            the root (:mod:`envs.mdp.privileged`, appended last); the policy's observations do not change.
        only_positive_rewards: clip the reward sum (all terms but the termination penalty) at 0 each step, then add
            the termination penalty (legged_gym's ``only_positive_rewards``); the per-term episode sums are unclipped.
        gait_clock: a gait clock (:mod:`envs.mdp.gait`) whose ``(sin, cos)`` phase ends every policy frame and the
            critic observation, and whose swing profile the ``feet_phase`` reward reads; ``None``: no clock.
        amp_history_length: frames of the observation group ``amp`` ``[H, 2 A + 10]`` that adversarial motion
            priors read (:mod:`envs.mdp.amp`, no noise); 0: no group.
    """

    robot: str = "t1"
    impl: str = "jax"
    naconmax: int = 8 * 8192
    njmax: int = 96
    sim_dt: float = 0.005
    decimation: int = 4
    solver: assets.SolverOptions = assets.SolverOptions()
    episode_length_s: float = 30.0
    action_scale: float = 1.0
    action_clip: tuple[float, float] | None = (-1.0, 1.0)
    clip_processed_actions: bool = True
    implicit_damping: bool = True
    random_arm_motion: bool = True
    history_length: int = 5
    obs_noise: bool = True
    soft_joint_pos_limit_factor: float = 0.9
    commands: commands.CommandConfig = commands.CommandConfig()
    domain: events.DomainConfig = events.DomainConfig()
    random_motion: random_motion.RandomMotionConfig = random_motion.RandomMotionConfig()
    rewards: Mapping[str, RewardTerm] = dataclasses.field(default_factory=lambda: dict(T1_REWARDS))
    curricula: Mapping[str, WeightRamp] = dataclasses.field(default_factory=lambda: dict(T1_CURRICULA))
    param_steps: Mapping[str, ParamStep] = dataclasses.field(default_factory=dict)
    termination_types: Mapping[str, tuple[str, float]] = dataclasses.field(
        default_factory=lambda: {k: ("neutral", 5.0) for k in ("base_orientation", "illegal_contacts",
                                                               "illegal_base_height")})
    limit_angle: float = float(np.radians(30.0))
    base_height_threshold: float = t1.DEFAULT_TRUNK_HEIGHT - 0.3
    illegal_contact_min_height: float = 0.45
    contact_margin: float = 0.005
    orientation_bodies: tuple[str, ...] = ("Trunk",)
    init_height_offset: float = 0.045
    terrain: terrain_lib.TerrainConfig | None = None
    terrain_curriculum: curriculum.TerrainCurriculumConfig = curriculum.TerrainCurriculumConfig()
    height_scan: tuple[float, int] = (0.0, 1)
    spawn_clearance: float = 0.3
    height_scanner: height_scan.HeightScannerConfig | None = None
    amp_history_length: int = 0
    gait_clock: gait.GaitClockConfig | None = None
    only_positive_rewards: bool = False
    privileged_critic: bool = False


@dataclasses.dataclass(frozen=True)
class G1VelocityConfig(T1VelocityConfig):
    """AGILE's ``G1LowerVelocityHistoryEnvCfg`` (14 controlled joints, action scale 0.5) on flat ground."""

    robot: str = "g1"
    action_scale: float = 0.5
    action_clip: tuple[float, float] | None = (-10.0, 10.0)
    domain: events.DomainConfig = events.DomainConfig(root_mass_add=(-1.0, 5.0),
                                                      root_com=((-0.15, 0.25), (-0.05, 0.05), (-0.15, 0.15)))
    rewards: Mapping[str, RewardTerm] = dataclasses.field(default_factory=lambda: dict(G1_REWARDS))
    curricula: Mapping[str, WeightRamp] = dataclasses.field(default_factory=lambda: dict(G1_CURRICULA))
    base_height_threshold: float = g1.DEFAULT_PELVIS_HEIGHT - 0.3
    orientation_bodies: tuple[str, ...] = ("pelvis", "torso_link")


VelocityConfig = T1VelocityConfig


def make_robot(cfg: VelocityConfig) -> Robot:
    """The robot tables and MJX-friendly model named by ``cfg.robot`` (built by
    :func:`envs.robots.registry.task_robot`, as the plain-MuJoCo evaluator builds it)."""
    if cfg.robot not in ("t1", "g1"):
        raise ValueError(f"unknown robot '{cfg.robot}', expected one of ['g1', 't1']")
    return registry.task_robot(cfg.robot, cfg.sim_dt, cfg.implicit_damping, cfg.solver, cfg.terrain)


def sized_for_batch(cfg: VelocityConfig, num_envs: int) -> VelocityConfig:
    """``cfg`` with the MuJoCo Warp buffers sized for a batch of ``num_envs`` envs (``impl="jax"``: unchanged).

    Warp keeps one contact buffer for the whole batch (``naconmax``) and ``njmax`` constraint rows per env; on
    a CPU every Warp kernel walks its whole buffer, so an oversized one costs time (2.5x at 16 envs).
    """
    if cfg.impl != "warp":
        return cfg
    model = make_robot(cfg).model
    contacts = mjx_impl.max_contacts(int(np.sum(model.geom_contype == assets.FOOT_CONTYPE)), cfg.terrain is not None)
    condim = int(np.max(model.geom_condim))
    rows_per_contact = 2 * (condim - 1) if model.opt.cone == mujoco.mjtCone.mjCONE_PYRAMIDAL else condim
    # Contacts, one active side per limited joint, and a friction-loss row per dof (joint friction DR).
    njmax = contacts * rows_per_contact + int(np.sum(model.jnt_limited)) + model.nv
    return dataclasses.replace(cfg, naconmax=num_envs * contacts, njmax=njmax)


def set_common_step(state: EnvState, step: int | Array) -> EnvState:
    """Writes the global control-step count (drives the action-rate curricula) into a (batched) state."""
    cur = state.info["common_step"]
    return state.replace(info={**state.info, "common_step": jnp.broadcast_to(jnp.asarray(step, jnp.int32), cur.shape)})


class VelocityEnv:
    """Velocity tracking with AGILE's MDP for the robot named in ``cfg.robot`` (see the module docstring)."""

    # Sampled at startup and counted globally (AGILE's startup events and common_step_counter): kept by VecEnv
    # across auto-resets.
    persistent_info = ("domain", "common_step")

    def __init__(self, cfg: VelocityConfig):
        self.cfg = cfg = dataclasses.replace(cfg, impl=mjx_impl.resolve_impl(cfg.impl))  # "auto": the backend's pick
        self.robot = robot = make_robot(cfg)
        self.mjx_model = mjx_impl.put_model(robot.model, cfg.impl)
        self._physics_step = mjx_impl.make_step(robot.model, cfg.impl)
        self._data0 = self.make_data()
        self.ctrl_dt = cfg.sim_dt * cfg.decimation
        self.max_episode_length = int(round(cfg.episode_length_s / self.ctrl_dt))
        self.action_size = len(robot.action_idx)
        clock = (obs_terms.ObsTerm("gait_clock", 2),) if cfg.gait_clock is not None else ()
        self.policy_layout = loco.policy_layout(self.action_size) + clock
        privileged_term = (obs_terms.ObsTerm("privileged", privileged_obs.SIZE),) if cfg.privileged_critic else ()
        self.critic_layout = loco.critic_layout(self.action_size, robot.num_joints) + clock + privileged_term
        mirrors = loco.obs_mirrors(robot, ((2, gait.mirror_clock),) if clock else (),
                                   ((privileged_obs.SIZE, privileged_obs.mirror),) if privileged_term else ())
        self.observation_shapes = {
            "policy": (cfg.history_length, obs_terms.layout_size(self.policy_layout)),
            "critic": (obs_terms.layout_size(self.critic_layout),),
        }
        self._reward_fns = terms.resolve_rewards(cfg.rewards, robot.joint_names, cfg.curricula)
        self.reward_names = tuple(self._reward_fns)
        self._stepped_fns = terms.resolve_param_steps(cfg.rewards, cfg.param_steps, robot.joint_names, cfg.curricula)
        self.termination_names = ("time_out", "base_orientation", "illegal_contacts", "illegal_base_height")
        self.termination_specs = {"time_out": TerminationSpec("time_out")}
        self.termination_specs.update({k: TerminationSpec(*v) for k, v in cfg.termination_types.items()})
        soft = cfg.soft_joint_pos_limit_factor
        mid, half = (robot.lower + robot.upper) / 2, (robot.upper - robot.lower) / 2
        self._soft_lower, self._soft_upper = mid - soft * half, mid + soft * half
        self._orientation_bodies = np.asarray([robot.model.body(n).id for n in cfg.orientation_bodies], np.int32)
        self._mirror_obs = symmetry.group_mirror(mirrors)
        self.terrain = terrain_lib.to_jax(terrain_lib.generate(cfg.terrain)) if cfg.terrain is not None else None
        self._scan = terrain_lib.scan_offsets(*cfg.height_scan)
        if cfg.height_scanner is not None:  # a 2-D group [1, ny, nx] and its left-right mirror (rows reversed)
            self.observation_shapes["height_scan"] = height_scan.observation_shape(cfg.height_scanner)
            self._mirror_obs = symmetry.group_mirror({**mirrors, "height_scan": height_scan.mirror})
        if cfg.amp_history_length > 0:  # the AMP group [H, 2A + 10] (its frame layout names joints and components)
            self.amp_layout, self.amp_joint_names = amp_obs.amp_layout(self.action_size), robot.action_names
            self.observation_shapes["amp"] = (cfg.amp_history_length, sum(n for _, n in self.amp_layout))
            mirror_rest, mirror_amp = self._mirror_obs, amp_obs.amp_mirror(robot)
            self._mirror_obs = lambda obs: {**mirror_rest(obs), **({"amp": mirror_amp(obs["amp"])} if "amp" in obs
                                                                   else {})}

    def make_data(self) -> mjx.Data:
        """Fresh ``mjx.Data`` of the model (``impl="c"``: :class:`envs.mujoco_c.CData`; host-built constants, so it is
        safe to close over in a trace)."""
        return mjx_impl.make_data(self.robot.model, self.cfg.impl, self.cfg.naconmax, self.cfg.njmax)

    def io_description(self) -> dict:
        """The task part of the exported ``policy.yaml`` in AGILE's IO-descriptor schema
        (:mod:`agile_jax.export.io_descriptor`).

        Policy terms are listed per frame (``shape [n]``) with ``overloads.history_length = H``; the env keeps
        the group as ``[H, F]`` frames, which ``observation_history`` declares (``frame_major``) so that the
        exporter reorders the graph input into AGILE's term-major layout. Terms add ``extras.noise`` then multiply
        by ``overloads.scale``; ``joint_pos_rel`` subtracts ``joint_pos_offsets``. The action clip is stated on
        the raw action, per joint (the target clip of training mapped through ``target = offset + scale * a``);
        joints outside the action hold their default position under the same PD.

        Returns:
            A dict with ``observations``, ``observation_history``, ``actions``, ``articulations``, ``scene``.
        """
        cfg, r = self.cfg, self.robot

        def f64(x):  # float32 tables as short decimals in the YAML
            return np.round(np.asarray(x, np.float64), 6)

        h, names = cfg.history_length, list(r.action_names)
        default_a = f64(r.default_pos[r.action_idx])
        # Our term -> (AGILE's term name, observation_type, joint-space keys).
        sources = {"base_ang_vel": ("base_ang_vel", "RootState", {}),
                   "projected_gravity": ("projected_gravity", "RootState", {}),
                   "velocity_commands": ("locomotion_command", "Command", {}),
                   "joint_pos": ("joint_pos_rel", "JointState", {"joint_names": names, "joint_pos_offsets": default_a}),
                   "joint_vel": ("joint_vel_rel", "JointState",
                                 {"joint_names": names, "joint_vel_offsets": np.zeros(len(names))}),
                   "actions": ("last_action", "Action", {}),
                   "gait_clock": ("gait_clock", "GaitClock",
                                  {"frequency": cfg.gait_clock.frequency if cfg.gait_clock else None,
                                   "stand_below": cfg.gait_clock.stand_below if cfg.gait_clock else None})}
        terms = []
        for t in self.policy_layout:
            name, kind, extra = sources[t.name]
            noise = {"type": "uniform", "n_min": -t.noise, "n_max": t.noise} if cfg.obs_noise and t.noise else None
            terms.append({"name": name, "shape": [t.size], "dtype": "torch.float32", "mdp_type": "Observation",
                          "observation_type": kind, "overloads": {"clip": None, "scale": t.scale, "history_length": h,
                                                                  "flatten_history_dim": True},
                          **extra, "extras": {"noise": noise, **({"command": "base_velocity"} if kind == "Command"
                                                                 else {})}})
        scan = {"height_scan": [height_scan.io_term(cfg.height_scanner, cfg.obs_noise)]} if cfg.height_scanner else {}
        return {
            "observations": {"policy": terms, **scan},
            "observation_history": {"policy": {"layout": "frame_major", "reset": "repeat_first"}},
            "actions": [{"name": "joint_position_action", "action_type": "JointAction", "mdp_type": "Action",
                         "shape": [len(names)], "dtype": "torch.float32", "joint_names": names,
                         "scale": cfg.action_scale, "offset": default_a, "clip": self._raw_action_clip(default_a)}],
            "articulations": {"robot": {
                "name": r.name, "joint_names": list(r.joint_names), "default_joint_pos": f64(r.default_pos),
                "default_joint_vel": np.zeros(r.num_joints), "default_joint_stiffness": f64(r.kp),
                "default_joint_damping": f64(r.kd), "effort_limit": f64(r.effort_limit),
                "velocity_limit": f64(r.velocity_limit), "saturation_effort": f64(r.saturation),
                "joint_pos_limits": f64(np.stack([r.lower, r.upper], -1)), "actuator": "DelayedDCMotor",
                "max_delay": r.max_delay, "root_body": r.model.body(r.root_body).name,
                "stand_height": float(f64(r.stand_height)),
                "init_root_height": float(f64(r.stand_height + cfg.init_height_offset))}},
            "commands": {"base_velocity": {"fields": ["lin_vel_x", "lin_vel_y", "ang_vel_z"],
                                           "ranges": {"lin_vel_x": cfg.commands.lin_vel_x,
                                                      "lin_vel_y": cfg.commands.lin_vel_y,
                                                      "ang_vel_z": cfg.commands.ang_vel_z}}},
            "terminations": {"limit_angle": float(f64(cfg.limit_angle)),
                             "base_height": float(f64(cfg.base_height_threshold))},
            "scene": {"dt": self.ctrl_dt, "physics_dt": cfg.sim_dt, "decimation": cfg.decimation,
                      "episode_length_s": cfg.episode_length_s, "implicit_damping": cfg.implicit_damping},
        }

    def _raw_action_clip(self, offset: np.ndarray) -> list | None:
        """Per-joint ``[lo, hi]`` bounds of the raw action equivalent to the configured clip (``None``: no clip)."""
        cfg = self.cfg
        if cfg.action_clip is None:
            return None
        lo, hi = (np.full(len(offset), b, np.float64) for b in cfg.action_clip)
        if cfg.clip_processed_actions:  # clip(o + s * a, lo, hi) == o + s * clip(a, (lo - o) / s, (hi - o) / s)
            lo, hi = (lo - offset) / cfg.action_scale, (hi - offset) / cfg.action_scale
            lo, hi = np.minimum(lo, hi), np.maximum(lo, hi)  # a negative scale swaps the bounds
        return np.round(np.stack([lo, hi], -1), 6).tolist()

    # -- mirror maps (pure, last axis) -------------------------------------------------------------
    def mirror_actions(self, actions: Array) -> Array:
        """Left-right mirror of actions ``[..., A]``."""
        return self.robot.mirror_action(actions)

    def mirror_obs(self, obs: Mapping[str, Array]) -> dict[str, Array]:
        """Left-right mirror of observation groups (policy frame by frame over ``[..., H, D]``; critic ``[..., D]``)."""
        return self._mirror_obs(obs)

    # -- reset -----------------------------------------------------------------------------------
    def reset(self, key: PRNGKey) -> EnvState:
        """A new episode: randomised domain, root pose/velocity, joint pose, command, delays and timers."""
        cfg, robot = self.cfg, self.robot
        ks = jax.random.split(key, 10)
        domain = events.sample_domain(ks[0], robot, cfg.domain) if cfg.domain.randomize else None
        domain = domain if domain is not None else events.nominal_domain(robot)
        root_q, root_qd = events.sample_root_state(ks[1], robot.stand_height + cfg.init_height_offset, cfg.domain)
        if self.terrain is not None:
            tile = self._initial_tile(jax.random.fold_in(key, 1))
            root_q = self._place_on_tile(root_q, *tile)
        default = jnp.asarray(robot.default_pos)
        q = events.sample_joint_pos(ks[2], default, self._soft_lower, self._soft_upper, cfg.domain.reset_joint_scale)
        data = self._data0  # built once on the host: under vmap, Warp's shared contact buffer stays unbatched
        qpos = jnp.asarray(data.qpos).at[0:7].set(root_q).at[robot.qpos_adr].set(q)
        data = data.replace(qpos=qpos, qvel=jnp.zeros_like(data.qvel).at[0:6].set(root_qd))
        cmd = commands.sample_command(ks[3], cfg.commands)
        zeros_a = jnp.zeros(self.action_size, jnp.float32)
        wrench = jnp.zeros((1 + len(robot.extremity_bodies), 6), jnp.float32)
        info = {
            "rng": ks[9], "command": cmd.command, "command_time": cmd.time_left, "last_action": zeros_a,
            "prev_action_rate": zeros_a,
            "delay": actuators.sample_delays(ks[4], robot.delay_group, robot.group_max_delay),
            "delay_line": actuators.fill_delay_line(default, robot.max_delay), "fresh": jnp.asarray(True),
            "motion": random_motion.init_motion(ks[5], default[robot.random_idx], cfg.random_motion),
            "domain": domain, "wrench": wrench,
            "push_time": jax.random.uniform(ks[6], (), jnp.float32, *cfg.domain.push_interval),
            "wrench_time": jax.random.uniform(ks[7], (), jnp.float32, *cfg.domain.wrench_interval),
            "common_step": jnp.zeros((), jnp.int32),
            "feet_air_time": jnp.zeros(2, jnp.float32), "feet_contact_time": jnp.zeros(2, jnp.float32),
            "gait_time": jnp.zeros((), jnp.float32),
        }
        info["root_vel"] = self._root_vel_w(data, info)
        if self.terrain is not None:
            zero = jnp.zeros((), jnp.int32)
            info.update(terrain_level=tile[0], terrain_col=tile[1], curriculum_successes=zero,
                        curriculum_failures=zero, travelled=jnp.zeros((), jnp.float32), segment_start=root_q[0:2])
        frame = self._policy_frame(ks[8], data, info)
        info["history"] = obs_terms.fill_history(frame, cfg.history_length)
        obs = {"policy": info["history"], "critic": self._critic_obs(data, info)}
        obs = self._with_height_scan(obs, jax.random.fold_in(ks[8], 1), data)
        obs, info = self._with_amp(obs, info, data, fresh=True)
        zero = jnp.zeros((), jnp.float32)
        return EnvState(
            data=data, obs=obs, reward=zero, terminated=jnp.asarray(False), time_out=jnp.asarray(False),
            reward_terms={k: zero for k in self.reward_names},
            termination_terms={k: jnp.asarray(False) for k in self.termination_names}, info=info,
        )

    # -- step ------------------------------------------------------------------------------------
    def step(self, state: EnvState, action: Array) -> EnvState:
        """One control step (see the module docstring for the order of operations)."""
        info = dict(state.info)
        rng, k_motion, k_cmd, k_event, k_obs = jax.random.split(info["rng"], 5)
        model, motor = self._model_and_motor(info["domain"])
        target, info["motion"] = self._joint_targets(k_motion, info, action)
        line = jnp.where(info["fresh"], actuators.fill_delay_line(target, self.robot.max_delay), info["delay_line"])
        data, line, computed, applied = self._physics(model, motor, state.data, info, line, target)
        info.update(delay_line=line, fresh=jnp.asarray(False), rng=rng, gait_time=info["gait_time"] + self.ctrl_dt)
        ground = self._ground(data)
        term_terms = self._terminations(data, ground)
        terminated = term_terms["base_orientation"] | term_terms["illegal_contacts"] | term_terms["illegal_base_height"]
        sig = self._signals(data, info, action, computed, applied, terminated, ground)
        sig, info = self._advance_gait_timers(sig, info)
        reward_terms = self.weighted_reward_terms(sig, info["common_step"])
        # Bookkeeping for the next step's rate terms and accelerations.
        info.update(
            prev_action_rate=action - info["last_action"], last_action=action, root_vel=self._root_vel_w(data, info),
            common_step=info["common_step"] + 1,
        )
        # Commands are resampled after the rewards, then interval events fire (Isaac Lab order).
        cmd = commands.update_command(k_cmd, commands.CommandState(info["command"], info["command_time"]),
                                      self.ctrl_dt, self.cfg.commands)
        if self.terrain is not None:
            resampled = commands.expires(info["command_time"], self.ctrl_dt)
            info = self._close_command_segment(info, data.qpos[0:2], resampled)
        info.update(command=cmd.command, command_time=cmd.time_left)
        data, info = self._interval_events(k_event, data, info)
        info["history"] = obs_terms.push_history(info["history"], self._policy_frame(k_obs, data, info))
        obs = {"policy": info["history"], "critic": self._critic_obs(data, info)}
        obs = self._with_height_scan(obs, jax.random.fold_in(k_obs, 1), data)
        obs, info = self._with_amp(obs, info, data, fresh=False)
        reward = self._total_reward(reward_terms)
        return state.replace(
            data=data, obs=obs, reward=reward, terminated=terminated, time_out=jnp.asarray(False),
            reward_terms=reward_terms, termination_terms=term_terms, info=info,
        )

    def _total_reward(self, reward_terms: Mapping[str, Array]) -> Array:
        """The sum of the weighted terms; with ``only_positive_rewards``, legged_gym's rule: the sum of every term but
        the termination penalty is clipped at 0, then the termination penalty is added."""
        zero = jnp.zeros((), jnp.float32)
        total = sum(reward_terms.values(), zero)
        if not self.cfg.only_positive_rewards:
            return total
        penalty = sum((v for name, v in reward_terms.items() if self.cfg.rewards[name].func == "is_terminated"), zero)
        return jnp.maximum(total - penalty, 0.0) + penalty

    def physics_model(self, domain: events.DomainParams) -> mjx.Model:
        """The MJX model one env simulates with: the nominal model, or its randomised fields swapped in."""
        return self._model_and_motor(domain)[0]

    def _model_and_motor(self, domain: events.DomainParams) -> tuple[mjx.Model, actuators.MotorParams]:
        """The env's per-env model (randomised fields swapped in when DR is on) and its motor constants."""
        r = self.robot
        nominal = (jnp.asarray(r.effort_limit), jnp.asarray(r.velocity_limit), jnp.asarray(r.saturation))
        if not self.cfg.domain.randomize:
            return self.mjx_model, actuators.MotorParams(jnp.asarray(r.kp), jnp.asarray(r.kd), *nominal)
        kd = jnp.asarray(r.kd) * domain.kd_scale
        damping = jnp.zeros(r.model.nv, jnp.float32).at[r.dof_adr].set(kd) if self.cfg.implicit_damping else None
        model = events.apply_domain(self.mjx_model, domain, damping)
        return model, actuators.MotorParams(jnp.asarray(r.kp) * domain.kp_scale, kd, *nominal)

    def _joint_targets(self, key: PRNGKey, info: dict, action: Array) -> tuple[Array, random_motion.RandomMotionState]:
        """Position targets of all joints ``[J]``: policy legs, random-motion arms/head, held waist."""
        cfg, r = self.cfg, self.robot
        default = jnp.asarray(r.default_pos)
        a = action if cfg.clip_processed_actions or cfg.action_clip is None else jnp.clip(action, *cfg.action_clip)
        legs = default[r.action_idx] + cfg.action_scale * a
        if cfg.clip_processed_actions and cfg.action_clip is not None:
            legs = jnp.clip(legs, *cfg.action_clip)
        motion = info["motion"]
        if cfg.random_arm_motion:
            motion = random_motion.step_motion(
                key, motion, jnp.asarray(r.lower[r.random_idx]), jnp.asarray(r.upper[r.random_idx]), self.ctrl_dt,
                cfg.random_motion,
            )
        target = default.at[r.action_idx].set(legs).at[r.random_idx].set(motion.position)
        return target, motion

    def _physics(self, model, motor, data, info, line, target):
        """``decimation`` physics steps of delayed DC-motor PD; returns data, delay line and last torques ``[J]``."""
        r = self.robot
        xfrc = events.wrench_to_xfrc(info["wrench"], self._wrench_bodies, data.xquat, r.model.nbody)

        def substep(carry, _, derived=True):
            d, ln = carry
            qd = d.qvel[r.dof_adr]
            ln, computed, applied = actuators.motor_substep(ln, target, info["delay"], d.qpos[r.qpos_adr], qd, motor)
            # With implicit damping MuJoCo subtracts kd * qd_next itself; add the explicit share back.
            ctrl = applied + motor.kd * qd if self.cfg.implicit_damping else applied
            d = d.replace(ctrl=jnp.zeros_like(d.ctrl).at[r.actuator_id].set(ctrl), xfrc_applied=xfrc)
            return (self._physics_step(model, d, derived), ln), (computed, applied)

        if self.cfg.impl != "c":
            (data, line), (computed, applied) = jax.lax.scan(substep, (data, line), None, length=self.cfg.decimation)
            return data, line, computed[-1], applied[-1]
        # MuJoCo C returns the kinematic fields the MDP reads only after the last physics step.
        early = functools.partial(substep, derived=False)
        (data, line), _ = jax.lax.scan(early, (data, line), None, length=self.cfg.decimation - 1)
        (data, line), (computed, applied) = substep((data, line), None)
        return data, line, computed, applied

    @property
    def _wrench_bodies(self) -> np.ndarray:
        return np.concatenate([[self.robot.wrench_body], self.robot.extremity_bodies]).astype(np.int32)

    def _ground(self, data: mjx.Data) -> loco.Ground | None:
        """Terrain heights under the measured points, ``None`` on the flat floor."""
        return None if self.terrain is None else loco.ground_heights(self.robot, data, self.terrain, self._scan)

    def _terminations(self, data: mjx.Data, ground: loco.Ground | None = None) -> dict[str, Array]:
        """Termination terms; ``ground`` defaults to :meth:`_ground` of ``data``."""
        c = self.cfg
        ground = self._ground(data) if ground is None else ground
        return loco.terminations(self.robot, data, c.limit_angle, c.base_height_threshold,
                                 c.illegal_contact_min_height, c.contact_margin, ground)

    def weighted_reward_terms(self, sig: Signals, common_step: Array) -> dict[str, Array]:
        """``weight * term * dt`` per term at the global control step ``common_step`` (weight ramps and parameter
        steps applied)."""
        weights = terms.reward_weights(self.cfg.rewards, self.cfg.curricula, common_step)
        fns = terms.stepped_rewards(self._reward_fns, self._stepped_fns, common_step)
        return terms.weighted_rewards(fns, weights, sig, self.ctrl_dt)

    def _signals(self, data, info, action, computed, applied, terminated, ground=None) -> Signals:
        """Reward signals; ``ground`` defaults to :meth:`_ground` of ``data``."""
        ground = self._ground(data) if ground is None else ground
        return loco.signals(self.robot, data, info, action, (computed, applied), terminated, self.ctrl_dt,
                            (self._soft_lower, self._soft_upper), self._orientation_bodies, self.cfg.contact_margin,
                            ground)

    def _advance_gait_timers(self, sig: Signals, info: dict) -> tuple[Signals, dict]:
        """Per-foot air / contact timers advanced by this step's contacts, in the signals and carried in ``info``;
        the signals also get the gait clock's phase (when the task has a clock)."""
        air, stance = rewards.update_gait_timers(info["feet_air_time"], info["feet_contact_time"], sig.feet_contact,
                                                 self.ctrl_dt)
        clock = self.cfg.gait_clock
        phase = gait.phase(info["gait_time"], clock.frequency) if clock is not None else 0.0
        sig = sig._replace(feet_air_time=air, feet_contact_time=stance, gait_phase=phase)
        return sig, {**info, "feet_air_time": air, "feet_contact_time": stance}

    # -- rough terrain ---------------------------------------------------------------------------
    def _initial_tile(self, key: PRNGKey) -> tuple[Array, Array]:
        """A start tile: level ``U{0..max_init_level}``, column ``U{0..num_cols-1}`` (int32 scalars)."""
        k_level, k_col = jax.random.split(key)
        level = jax.random.randint(k_level, (), 0, self.cfg.terrain.max_init_level + 1, jnp.int32)
        return level, jax.random.randint(k_col, (), 0, self.terrain.num_cols, jnp.int32)

    def _place_on_tile(self, root_q: Array, level: Array, col: Array) -> Array:
        """Root pose ``[7]`` given relative to a tile (xy from its origin, z above the local ground) in the world."""
        xy = root_q[0:2] + self.terrain.origins[level, col, 0:2]
        ground = terrain_lib.max_height_near(self.terrain, xy, self.cfg.spawn_clearance)
        return root_q.at[0:2].set(xy).at[2].add(ground)

    def _tile_relative(self, root_q: Array, level: Array, col: Array) -> Array:
        """Inverse of :meth:`_place_on_tile`."""
        ground = terrain_lib.max_height_near(self.terrain, root_q[0:2], self.cfg.spawn_clearance)
        return root_q.at[0:2].add(-self.terrain.origins[level, col, 0:2]).at[2].add(-ground)

    @staticmethod
    def _close_command_segment(info: dict, root_xy: Array, resampled: Array) -> dict:
        """At a command resample, adds the segment's straight-line distance to ``travelled`` and starts a new one
        at ``root_xy`` (AGILE's ``UniformNullVelocityCommand._resample_command``)."""
        travelled = curriculum.travelled_distance(info["travelled"], info["segment_start"], root_xy)
        return {**info, "travelled": jnp.where(resampled, travelled, info["travelled"]),
                "segment_start": jnp.where(resampled, root_xy, info["segment_start"])}

    def curriculum_metrics(self, state: EnvState) -> dict[str, Array]:
        """The terrain level of one env (``Curriculum/terrain_levels``, Isaac Lab's tag); none on flat ground."""
        if self.terrain is None:
            return {}
        return {"terrain_levels": state.info["terrain_level"].astype(jnp.float32)}

    def carry_over(self, finished: EnvState, fresh: EnvState) -> EnvState:
        """Terrain-level curriculum at an auto-reset (called by ``VecEnv`` per env; identity on flat ground).

        The env keeps its column and its success / failure counts; its level moves by
        :func:`envs.mdp.curriculum.terrain_level_update` from the finished episode's travelled distance, and the
        fresh episode's spawn is moved from the tile its reset drew to that tile.
        """
        if self.terrain is None:
            return fresh
        done = finished.info
        distance = curriculum.travelled_distance(done["travelled"], done["segment_start"], finished.data.qpos[0:2])
        before = curriculum.LevelCounters(done["terrain_level"], done["curriculum_successes"],
                                          done["curriculum_failures"])
        after = curriculum.terrain_level_update(jax.random.fold_in(fresh.info["rng"], 2), before, distance,
                                                self.terrain.num_levels, self.cfg.terrain_curriculum)
        col = done["terrain_col"]
        local = self._tile_relative(fresh.data.qpos[0:7], fresh.info["terrain_level"], fresh.info["terrain_col"])
        root_q = self._place_on_tile(local, after.level, col)
        info = {**fresh.info, "terrain_level": after.level, "terrain_col": col,
                "curriculum_successes": after.successes, "curriculum_failures": after.failures,
                "segment_start": root_q[0:2]}
        return fresh.replace(data=fresh.data.replace(qpos=fresh.data.qpos.at[0:7].set(root_q)), info=info)

    def _interval_events(self, key: PRNGKey, data: mjx.Data, info: dict):
        """Velocity pushes and new external wrenches when their per-env timers expire."""
        dc = self.cfg.domain
        k_pt, k_pv, k_wt, k_wv = jax.random.split(key, 4)
        fire, info["push_time"] = events.interval_timer(k_pt, info["push_time"], self.ctrl_dt, dc.push_interval)
        if dc.push:
            pushed = events.push_velocity(k_pv, data.qvel, data.qpos[3:7], dc.push_lin_vel, dc.push_ang_vel)
            data = data.replace(qvel=jnp.where(fire, pushed, data.qvel))
        fire, info["wrench_time"] = events.interval_timer(k_wt, info["wrench_time"], self.ctrl_dt, dc.wrench_interval)
        if dc.wrench:
            fresh = events.sample_wrenches(k_wv, len(self.robot.extremity_bodies), dc)
            info["wrench"] = jnp.where(fire, fresh, info["wrench"])
        return data, info

    # -- observations ----------------------------------------------------------------------------
    def _root_vel_w(self, data: mjx.Data, info: dict) -> Array:
        """Root centre-of-mass velocity and angular velocity in the world frame ``[6]``."""
        return loco.root_vel_w(data.qpos, data.qvel, loco.root_com_offset(self.robot, info))

    def _term_values(self, data: mjx.Data, info: dict) -> dict[str, Array]:
        values = loco.term_values(self.robot, data.qpos, data.qvel, info["command"], info["last_action"],
                                  loco.root_com_offset(self.robot, info))
        if self.cfg.gait_clock is not None:
            values["gait_clock"] = gait.gated_clock_observation(info["gait_time"], info["command"], self.cfg.gait_clock)
        if self.cfg.privileged_critic:
            values["privileged"] = privileged_obs.values(self.robot, info["domain"], info["wrench"][0], self.cfg.domain)
        return values

    def _policy_frame(self, key: PRNGKey, data: mjx.Data, info: dict) -> Array:
        """One policy frame ``[45]`` (noisy when ``cfg.obs_noise``)."""
        key = key if self.cfg.obs_noise else None
        return obs_terms.assemble(self._term_values(data, info), self.policy_layout, key)

    def _critic_obs(self, data: mjx.Data, info: dict) -> Array:
        """Noise-free critic observation ``[70]`` (plus the clock's 2 and the privileged term's 14 when on)."""
        return obs_terms.assemble(self._term_values(data, info), self.critic_layout, None)

    def _with_height_scan(self, obs: dict, key: PRNGKey, data: mjx.Data) -> dict:
        """``obs`` plus the ``height_scan`` group ``[1, ny, nx]`` when the task has a height scanner."""
        scanner = self.cfg.height_scanner
        if scanner is None:
            return obs
        key = key if self.cfg.obs_noise else None
        return {**obs, "height_scan": height_scan.height_scan(scanner, self.terrain, data.qpos[0:3], data.qpos[3:7],
                                                              key)}

    def _with_amp(self, obs: dict, info: dict, data: mjx.Data, fresh: bool) -> tuple[dict, dict]:
        """``obs`` and ``info`` with the AMP frames ``[H, D]`` (back-filled when ``fresh``) when the task has them."""
        length = self.cfg.amp_history_length
        if length <= 0:
            return obs, info
        ground = 0.0 if self.terrain is None else terrain_lib.mean_height_around(self.terrain, data.qpos[0:2],
                                                                                  self._scan)
        frame = amp_obs.amp_frame(self.robot, data.qpos, data.qvel, ground)
        frames = obs_terms.fill_history(frame, length) if fresh else obs_terms.push_history(info["amp"], frame)
        return {**obs, "amp": frames}, {**info, "amp": frames}
