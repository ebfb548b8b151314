"""Terrain-level curriculum (Isaac Lab's ``terrain_levels_vel``, as AGILE's rough-terrain tasks use it).

At the end of an episode an env moves one level (tile row) up when it walked farther than half a tile from
its tile origin, and one level down when it walked less than half the distance its command asked for over a
full episode (``|cmd_xy| * episode_length_s / 2``). Levels below 0 are clamped; levels past the top are
replaced by a uniformly random level, so that solved envs keep spreading over the whole grid.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from agile_jax.types import Array, PRNGKey


def terrain_level_update(key: PRNGKey, level: Array, distance: Array, command_xy: Array, episode_length_s: float,
                         tile_size: float, num_levels: int) -> Array:
    """The next terrain level of one env (int32 scalar).

    Args:
        key: key of the random level drawn when the env moves past the top level.
        level: current level, int scalar in ``[0, num_levels)``.
        distance: xy distance (m) of the root from its tile origin at the end of the episode.
        command_xy: the velocity command ``[2]`` (m/s) at the end of the episode.
        episode_length_s: the episode time limit (s).
        tile_size: side of a tile (m).
        num_levels: number of levels (tile rows).
    """
    move_up = distance > tile_size / 2
    move_down = (distance < jnp.linalg.norm(command_xy) * episode_length_s * 0.5) & ~move_up
    new = level + move_up.astype(jnp.int32) - move_down.astype(jnp.int32)
    wrapped = jax.random.randint(key, (), 0, num_levels, jnp.int32)
    return jnp.where(new >= num_levels, wrapped, jnp.maximum(new, 0)).astype(jnp.int32)
