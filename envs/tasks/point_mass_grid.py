"""The point mass whose policy sees its position only as a 2-D image: a small, fast task for CNN encoders.

Observation groups:

* ``policy`` ``[2]``: velocity;
* ``grid`` ``[1, n, n]``: the position drawn as a Gaussian blob on an ``n x n`` grid of cell centres spanning
  ``[-bound, bound]^2`` (rows along y, columns along x, both ascending): ``exp(-|pos - c|^2 / (2 width^2))``;
* ``critic`` ``[5]``: position, velocity and distance to the origin (as :class:`envs.tasks.point_mass.PointMass`).

Dynamics, rewards and terminations are :class:`~envs.tasks.point_mass.PointMass`'s, so reaching the origin
needs the position, which the actor can read only through a CNN on ``grid``. The x -> -x reflection flips the
grid's columns.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax.numpy as jnp

from envs.tasks.point_mass import PointMass, PointMassConfig


@dataclass
class PointMassGridConfig(PointMassConfig):
    """Point-mass settings plus the image: ``grid_size`` cells per side, blob ``grid_width`` (m)."""

    grid_size: int = 9
    grid_width: float = 0.6


class PointMassGrid(PointMass):
    """:class:`PointMass` with the position as a 2-D ``grid`` observation (see the module docstring)."""

    policy_layout = (("vel", 2),)

    def __init__(self, cfg: PointMassGridConfig | None = None):
        super().__init__(cfg or PointMassGridConfig())
        n = self.cfg.grid_size
        self.observation_shapes = {"policy": (2,), "grid": (1, n, n), "critic": (5,)}
        self._centres = jnp.linspace(-self.cfg.bound, self.cfg.bound, n)

    def render(self, pos):
        """The blob image ``[1, n, n]`` of a position ``[2]`` (row ``i`` at ``y_i``, column ``j`` at ``x_j``)."""
        dx = jnp.square(self._centres - pos[0])[None, :]
        dy = jnp.square(self._centres - pos[1])[:, None]
        return jnp.exp(-(dx + dy) / (2.0 * self.cfg.grid_width ** 2))[None]

    def _obs(self, pos, vel):
        obs = super()._obs(pos, vel)
        return {"policy": vel, "grid": self.render(pos), "critic": obs["critic"]}

    @staticmethod
    def mirror_obs(obs: dict) -> dict:
        """Mirrors every group under x -> -x: velocity and critic signs, the grid's columns reversed."""
        signs = {"policy": jnp.array([-1.0, 1.0]), "critic": jnp.array([-1.0, 1.0, -1.0, 1.0, 1.0])}
        return {name: jnp.flip(x, axis=-1) if name == "grid" else x * signs[name] for name, x in obs.items()}
