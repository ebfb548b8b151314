"""Terrain-level curriculum: AGILE's ``terrain_levels_vel_curriculum`` (T1 and G1 rough velocity tasks).

The distance an episode counts is the one AGILE's ``UniformNullVelocityCommand`` reports as
``traveled_distance``: the straight-line xy displacement of the root over each command segment, summed over the
segments of the episode (a new segment starts at every command resample). At the end of an episode:

* a distance above ``move_up_distance`` counts one success, below ``move_down_distance`` one failure (whatever
  the command: a standing env that stays put fails);
* ``n_successes`` successes move the env one level (tile row) up, ``n_failures`` failures one level down, and
  either move clears both counters; the counters otherwise carry over from episode to episode;
* levels below 0 are clamped; levels past the top are replaced by a uniformly random level (Isaac Lab's
  ``TerrainImporter.update_env_origins``), so that solved envs keep spreading over the whole grid.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp

from agile_jax.types import Array, PRNGKey


@dataclasses.dataclass(frozen=True)
class TerrainCurriculumConfig:
    """AGILE's ``CurriculumCfg.terrain_levels`` parameters (T1 ``velocity_env_cfg.py``).

    Attributes:
        move_up_distance / move_down_distance: an episode's travelled distance (m) above / below which it counts
            as a success / failure.
        n_successes / n_failures: successes / failures that move an env one level up / down.
    """

    move_up_distance: float = 4.0
    move_down_distance: float = 2.0
    n_successes: int = 4
    n_failures: int = 10


class LevelCounters(NamedTuple):
    """One env's curriculum state: its level and the successes and failures counted since its last move."""

    level: Array
    successes: Array
    failures: Array


def travelled_distance(segments_sum: Array, segment_start: Array, root_xy: Array) -> Array:
    """Distance (m) travelled so far: the finished segments plus the current one, from its start ``[2]``."""
    return segments_sum + jnp.linalg.norm(root_xy - segment_start)


def terrain_level_update(key: PRNGKey, counters: LevelCounters, distance: Array, num_levels: int,
                         cfg: TerrainCurriculumConfig = TerrainCurriculumConfig()) -> LevelCounters:
    """The counters of one env after an episode that travelled ``distance`` (int32 scalars).

    Args:
        key: key of the random level drawn when the env moves past the top level.
        counters: the env's level ``[0, num_levels)`` and counts before this episode.
        distance: the episode's travelled distance (m), :func:`travelled_distance`.
        num_levels: number of levels (tile rows).
        cfg: thresholds and counts.
    """
    successes = counters.successes + (distance > cfg.move_up_distance).astype(jnp.int32)
    failures = counters.failures + (distance < cfg.move_down_distance).astype(jnp.int32)
    move_up, move_down = successes >= cfg.n_successes, failures >= cfg.n_failures
    moved = move_up | move_down
    new = counters.level + move_up.astype(jnp.int32) - move_down.astype(jnp.int32)
    wrapped = jax.random.randint(key, (), 0, num_levels, jnp.int32)
    level = jnp.where(new >= num_levels, wrapped, jnp.maximum(new, 0)).astype(jnp.int32)
    zero = jnp.zeros((), jnp.int32)
    return LevelCounters(level, jnp.where(moved, zero, successes), jnp.where(moved, zero, failures))
