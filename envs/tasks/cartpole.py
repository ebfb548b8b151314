"""Cartpole balance and swing-up in MJX.

A cart slides on a rail along ``x`` and carries a pole on a hinge about ``y``; one motor pushes the
cart. The pole angle ``theta`` is ``0`` when the pole points up and grows as its tip moves towards
``+x``. The reward follows the spirit of the DeepMind Control Suite cartpole (upright, centred, small
control, small angular velocity), written as a table of weighted, additive terms whose weights sum
to one, so a balancing policy collects ~1 per control step.

* Balance (default): the pole starts near upright; the episode ends when the cart leaves the rail
  or the pole tilts past ``pole_angle_limit``.
* Swing-up (``swing_up=True``): the pole starts hanging down; only leaving the rail ends it.

The task is a single, pure environment; batch it with :class:`envs.core.VecEnv`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import field

import jax
import jax.numpy as jnp
import mujoco
import numpy as np
from mujoco import mjx

from agile_jax.types import Array, Observation, PRNGKey
from envs.core import EnvState, TerminationSpec

CARTPOLE_XML = """
<mujoco model="cartpole">
  <compiler angle="radian"/>
  <option timestep="{timestep}" integrator="Euler"/>
  <default>
    <geom contype="0" conaffinity="0"/>
  </default>
  <worldbody>
    <light pos="0 0 6"/>
    <geom name="floor" type="plane" pos="0 0 -0.05" size="4 4 0.1" rgba="0.3 0.3 0.35 1"/>
    <geom name="rail_left" type="capsule" fromto="-{rail} 0.07 1 {rail} 0.07 1" size="0.02" rgba="0.6 0.6 0.6 1"/>
    <geom name="rail_right" type="capsule" fromto="-{rail} -0.07 1 {rail} -0.07 1" size="0.02"
          rgba="0.6 0.6 0.6 1"/>
    <body name="cart" pos="0 0 1">
      <joint name="slider" type="slide" axis="1 0 0" damping="5e-4"/>
      <geom name="cart" type="box" size="0.2 0.15 0.1" mass="1" rgba="0.7 0.5 0.3 1"/>
      <body name="pole" pos="0 0 0">
        <joint name="hinge" type="hinge" axis="0 1 0" damping="2e-6"/>
        <geom name="pole" type="capsule" fromto="0 0 0 0 0 1" size="0.045" mass="0.1" rgba="0.7 0.5 0.3 1"/>
      </body>
    </body>
  </worldbody>
  <actuator>
    <motor name="slide" joint="slider" gear="{gear}" ctrllimited="true" ctrlrange="-1 1"/>
  </actuator>
</mujoco>
"""


@dataclasses.dataclass
class CartpoleConfig:
    """Settings of the cartpole task.

    Attributes:
        episode_length_s: episode time limit in seconds (``max_episode_length`` = this / ``dt``).
        swing_up: start with the pole hanging down and never end the episode on the pole angle.
        reset_noise_scale: half-width of the uniform noise added to the initial joint positions
            (m, rad) and velocities (m/s, rad/s).
        cart_limit: the episode ends when ``|x|`` exceeds this (m).
        pole_angle_limit: balance only: the episode ends when ``|theta|`` exceeds this (rad).
        num_envs: batch size used by the presets and ``VecEnv``.
        action_scale: factor from the clipped action in ``[-1, 1]`` to the motor control.
        timestep: physics timestep (s).
        n_substeps: physics steps per control step (control dt = ``timestep * n_substeps``).
        gear: motor gear, i.e. the force (N) at control ``1``.
        centered_scale: length scale (m) of the ``centered`` reward term.
        velocity_scale: angular-velocity scale (rad/s) of the ``small_velocity`` reward term.
        reward_weights: name -> weight of each reward term (see :data:`REWARD_FUNCTIONS`).
    """

    episode_length_s: float = 10.0
    swing_up: bool = False
    reset_noise_scale: float = 0.05
    cart_limit: float = 2.4
    pole_angle_limit: float = 0.8
    action_scale: float = 1.0
    timestep: float = 0.01
    n_substeps: int = 2
    gear: float = 10.0
    centered_scale: float = 1.0
    velocity_scale: float = 5.0
    reward_weights: dict[str, float] = field(
        default_factory=lambda: {"upright": 0.6, "centered": 0.2, "small_control": 0.1, "small_velocity": 0.1}
    )
    num_envs: int = 256


# -- state accessors ------------------------------------------------------------------------------
def cart_position(data: mjx.Data) -> Array:
    """Cart position ``x`` (m), ``[]``."""
    return data.qpos[0]


def pole_angle(data: mjx.Data) -> Array:
    """Unwrapped pole angle ``theta`` (rad, ``0`` = upright), ``[]``."""
    return data.qpos[1]


def cart_velocity(data: mjx.Data) -> Array:
    """Cart velocity (m/s), ``[]``."""
    return data.qvel[0]


def pole_angular_velocity(data: mjx.Data) -> Array:
    """Pole angular velocity (rad/s), ``[]``."""
    return data.qvel[1]


# -- reward terms (unweighted, each in [0, 1]) ----------------------------------------------------
RewardFn = Callable[[mjx.Data, Array, CartpoleConfig], Array]


def upright(data: mjx.Data, action: Array, cfg: CartpoleConfig) -> Array:
    """``(cos(theta) + 1) / 2``: 1 upright, 0 hanging down."""
    return (jnp.cos(pole_angle(data)) + 1.0) / 2.0


def centered(data: mjx.Data, action: Array, cfg: CartpoleConfig) -> Array:
    """``exp(-(x / centered_scale)^2)``: 1 at the rail centre."""
    return jnp.exp(-jnp.square(cart_position(data) / cfg.centered_scale))


def small_control(data: mjx.Data, action: Array, cfg: CartpoleConfig) -> Array:
    """``1 - a^2`` of the clipped action ``a`` ``[1]``: 1 without effort, 0 at full force."""
    return 1.0 - jnp.square(action[0])


def small_velocity(data: mjx.Data, action: Array, cfg: CartpoleConfig) -> Array:
    """``exp(-(theta_dot / velocity_scale)^2)``: 1 for a still pole."""
    return jnp.exp(-jnp.square(pole_angular_velocity(data) / cfg.velocity_scale))


REWARD_FUNCTIONS: dict[str, RewardFn] = {
    "upright": upright,
    "centered": centered,
    "small_control": small_control,
    "small_velocity": small_velocity,
}


# -- the task -------------------------------------------------------------------------------------
class CartpoleBalance:
    """Cartpole balance (or swing-up) as a single, pure MJX environment.

    Observations (both groups, ``[5]``): cart position, ``cos(theta)``, ``sin(theta)``, cart
    velocity, pole angular velocity. Action ``[1]``: motor command, clipped to ``[-1, 1]``.

    Args:
        cfg: task settings; defaults to the balance task.
        swing_up: if given, overrides ``cfg.swing_up``.
    """

    observation_shapes = {"policy": (5,), "critic": (5,)}
    action_size = 1
    termination_names = ("cart_out_of_bounds", "pole_fell", "time_out")
    termination_specs = {
        "cart_out_of_bounds": TerminationSpec("neutral"),
        "pole_fell": TerminationSpec("neutral"),
        "time_out": TerminationSpec("time_out"),
    }

    def __init__(self, cfg: CartpoleConfig | None = None, swing_up: bool | None = None):
        cfg = cfg or CartpoleConfig()
        if swing_up is not None:
            cfg = dataclasses.replace(cfg, swing_up=swing_up)
        self.cfg = cfg
        self.reward_weights = dict(cfg.reward_weights)
        self.reward_names = tuple(self.reward_weights)
        unknown = set(self.reward_names) - set(REWARD_FUNCTIONS)
        if unknown:
            raise ValueError(f"unknown reward terms {sorted(unknown)}, expected some of {sorted(REWARD_FUNCTIONS)}")
        self.dt = cfg.timestep * cfg.n_substeps
        self.max_episode_length = int(round(cfg.episode_length_s / self.dt))
        # Physics model: compiled once, the MJX copy is shared by all calls.
        xml = CARTPOLE_XML.format(timestep=cfg.timestep, gear=cfg.gear, rail=cfg.cart_limit + 0.5)
        self.mj_model = mujoco.MjModel.from_xml_string(xml)
        self.mjx_model = mjx.put_model(self.mj_model)
        # Template data at the nominal pose, with its kinematics computed once on the host.
        self.qpos0 = np.array([0.0, np.pi if cfg.swing_up else 0.0], np.float32)
        mj_data = mujoco.MjData(self.mj_model)
        mj_data.qpos[:] = self.qpos0
        mujoco.mj_forward(self.mj_model, mj_data)
        self._data0 = mjx.put_data(self.mj_model, mj_data)

    # -- protocol ---------------------------------------------------------------------------------
    def reset(self, key: PRNGKey) -> EnvState:
        """Starts an episode with the pole near upright (or hanging down for swing-up).

        Args:
            key: PRNG key of this env.

        Returns:
            The first :class:`EnvState` of the episode (zero reward, nothing terminated).
        """
        rng, key_pos, key_vel = jax.random.split(key, 3)
        # Initial joint state: nominal pose plus uniform noise. Derived quantities (body poses, ...)
        # stay those of the nominal pose until the first mjx.step recomputes them, which keeps the
        # reset (evaluated every step by VecEnv's auto-reset) cheap.
        noise = self.cfg.reset_noise_scale
        qpos = jnp.asarray(self.qpos0) + jax.random.uniform(key_pos, (2,), jnp.float32, -noise, noise)
        qvel = jax.random.uniform(key_vel, (2,), jnp.float32, -noise, noise)
        data = self._data0.replace(qpos=qpos, qvel=qvel)
        # Zero reward and termination terms with the structure every step returns.
        zero = jnp.zeros((), jnp.float32)
        no = jnp.zeros((), jnp.bool_)
        return EnvState(
            data=data,
            obs=self._observe(data),
            reward=zero,
            terminated=no,
            time_out=no,
            reward_terms={name: zero for name in self.reward_names},
            termination_terms={name: no for name in self.termination_names},
            info={"rng": rng, "last_action": jnp.zeros((self.action_size,), jnp.float32)},
        )

    def step(self, state: EnvState, action: Array) -> EnvState:
        """Advances the physics by one control step (``dt``) and evaluates the task terms.

        Args:
            state: current state of this env.
            action: motor command ``[1]``; clipped to ``[-1, 1]``.

        Returns:
            The next :class:`EnvState` (``step_count`` and episode sums are left to ``VecEnv``).
        """
        # Control: clip, scale, integrate n_substeps physics steps.
        action = jnp.clip(jnp.asarray(action, jnp.float32).reshape(self.action_size), -1.0, 1.0)
        data = state.data.replace(ctrl=action * self.cfg.action_scale)
        data = jax.lax.fori_loop(0, self.cfg.n_substeps, lambda _, d: mjx.step(self.mjx_model, d), data)
        # Task terms on the new state.
        reward_terms = self._reward_terms(data, action)
        termination_terms = self._termination_terms(data)
        terminated = termination_terms["cart_out_of_bounds"] | termination_terms["pole_fell"]
        # Advance the env's own rng every step (VecEnv derives auto-reset keys from it).
        rng, _ = jax.random.split(state.info["rng"])
        return state.replace(
            data=data,
            obs=self._observe(data),
            reward=sum(reward_terms.values()),
            terminated=terminated,
            time_out=jnp.zeros((), jnp.bool_),
            reward_terms=reward_terms,
            termination_terms=termination_terms,
            info={**state.info, "rng": rng, "last_action": action},
        )

    # -- left-right symmetry: the reflection x -> -x, theta -> -theta ---------------------------------
    @staticmethod
    def mirror_actions(actions: Array) -> Array:
        """Mirrors actions ``[..., 1]``: the motor force changes sign."""
        return -actions

    @staticmethod
    def mirror_obs(obs: Observation) -> Observation:
        """Mirrors every group ``[..., 5]`` = (x, cos, sin, x_dot, theta_dot): all but cos change sign."""
        signs = jnp.array([-1.0, 1.0, -1.0, -1.0, -1.0])
        return {name: x * signs for name, x in obs.items()}

    # -- task terms -------------------------------------------------------------------------------
    def _observe(self, data: mjx.Data) -> Observation:
        """Policy and critic observations, ``[5]`` each."""
        theta = pole_angle(data)
        obs = jnp.stack(
            [cart_position(data), jnp.cos(theta), jnp.sin(theta), cart_velocity(data), pole_angular_velocity(data)]
        ).astype(jnp.float32)
        return {"policy": obs, "critic": obs}

    def _reward_terms(self, data: mjx.Data, action: Array) -> dict[str, Array]:
        """Weighted reward terms, name -> ``[]`` float32."""
        return {
            name: (weight * REWARD_FUNCTIONS[name](data, action, self.cfg)).astype(jnp.float32)
            for name, weight in self.reward_weights.items()
        }

    def _termination_terms(self, data: mjx.Data) -> dict[str, Array]:
        """Fired termination terms, name -> ``[]`` bool (``time_out`` is filled in by VecEnv)."""
        out_of_bounds = jnp.abs(cart_position(data)) > self.cfg.cart_limit
        if self.cfg.swing_up:
            fell = jnp.zeros((), jnp.bool_)
        else:
            fell = jnp.abs(pole_angle(data)) > self.cfg.pole_angle_limit
        return {"cart_out_of_bounds": out_of_bounds, "pole_fell": fell, "time_out": jnp.zeros((), jnp.bool_)}
