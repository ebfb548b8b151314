"""``experiments/train_env_velocity.py``: the fixed-command overrides and the averaging over envs still running."""

import numpy as np
import pytest

from experiments.train_env_velocity import command_overrides, mean_velocity


def test_every_env_gets_the_command_and_a_zero_command_makes_them_all_standing():
    assert command_overrides((-0.3, 0.0, 0.5)) == [
        "env.lin_vel_x=[-0.3,-0.3]", "env.lin_vel_y=[0.0,0.0]", "env.ang_vel_z=[0.5,0.5]", "env.rel_standing_envs=0.0"]
    assert command_overrides((0.0, 0.0, 0.0))[-1] == "env.rel_standing_envs=1.0"


def test_a_command_the_sampler_would_zero_is_refused_with_the_fix():
    with pytest.raises(ValueError, match="zeroes commands under 0.1; give 0 0 0"):
        command_overrides((0.05, 0.0, 0.05))
    assert command_overrides((0.1, 0.0, 0.0))[0] == "env.lin_vel_x=[0.1,0.1]"


def test_the_mean_counts_only_steps_after_skip_and_before_each_envs_first_end():
    # 4 steps x 2 envs; env 0's episode ends at step 2 (that step and later ones are left out), env 1 runs on.
    velocity = np.zeros((4, 2, 3))
    velocity[:, 0, 0] = [9.0, 1.0, 50.0, 60.0]
    velocity[:, 1, 0] = [9.0, 2.0, 3.0, 4.0]
    velocity[:, :, 2] = 0.5
    done = np.zeros((4, 2), bool)
    done[2, 0] = True
    mean, count = mean_velocity(velocity, done, skip=1)
    assert count == 4  # env 0 at step 1, env 1 at steps 1-3
    np.testing.assert_allclose(mean, [(1.0 + 2.0 + 3.0 + 4.0) / 4, 0.0, 0.5])


def test_no_step_left_gives_nan_and_a_zero_count():
    mean, count = mean_velocity(np.ones((3, 1, 3)), np.array([[True], [False], [False]]), skip=1)
    assert count == 0 and np.isnan(mean).all()
