"""--resume with changed settings: the learning rate and entropy coefficient apply; layout changes are refused."""

from __future__ import annotations

import os

import jax
import numpy as np
import pytest
from omegaconf import OmegaConf

from agile_jax.algorithms import optim
from agile_jax.training import resume
from experiments import train
from experiments.configs import presets

BASE = ["config=point_mass", "num_envs=16", "max_iterations=2", "save_interval=1", "progress_bar=false",
        "algorithm.schedule=fixed"]


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("resume"))
    assert train.main([*BASE, f"log_root={root}"]) == 0
    return root


def test_changed_learning_rate_and_entropy_apply_and_are_reported(first_run, capsys):
    cfg = train.build_config([*BASE, f"log_root={first_run}", "max_iterations=3", "--resume",
                              "algorithm.learning_rate=1e-5", "algorithm.entropy_coef=0.02"])
    capsys.readouterr()
    runner = train.train(cfg)
    out = capsys.readouterr().out
    assert "algorithm.learning_rate 0.001 -> 1e-05" in out and "algorithm.entropy_coef 0.01 -> 0.02" in out
    assert "runner.max_iterations 2 -> 3" in out
    assert "at iteration 2; runs 3 more (runner.max_iterations), to iteration 5" in out  # as RSL-RL's learn()
    assert float(optim.get_learning_rate(runner.state.opt_state)) == pytest.approx(1e-5)  # fixed schedule keeps it
    assert float(runner.state.extensions["entropy"].coef) == pytest.approx(0.02)
    assert runner.current_learning_iteration == 5


def test_layout_changes_are_refused_in_one_line(first_run, capsys):
    runs_before = sorted(os.listdir(os.path.join(first_run, "point_mass")))
    code = train.main([*BASE, f"log_root={first_run}", "--resume", "policy.actor_hidden_dims=[8]"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error: ")
    assert "actor" in err[0]
    assert sorted(os.listdir(os.path.join(first_run, "point_mass"))) == runs_before  # no new folder left behind
    for run in runs_before:  # earlier runs keep their checkpoints
        assert os.listdir(os.path.join(first_run, "point_mass", run, "checkpoints"))


def test_reward_weights_ramps_and_parameters_may_change_and_terms_may_come_or_go():
    changes = {
        "env.reward_weights.track_lin_vel_xy_exp": (10.0, 15.0),  # retuned
        "env.reward_ramps.track_lin_vel_xy_exp.weight": (None, 15.0),  # a new ramp
        "env.reward_params.track_ang_vel.std": (1.0, 0.5),
        "env.reward_param_steps.track_ang_vel.start_step": (None, 60_000),  # a new parameter step
        "env.reward_weights.feet_air_time": (3.0, 0.0),  # a term dropped: its sums leave the env state
        "env.reward_weights.stand_still": (None, -2.0),  # a term added: its sums start at zero
        "env.num_envs": (256, 128),
        "algorithm.learning_rate": (1e-3, 1e-4),  # not a layout setting
        "env.tilt_limit_deg": (30.0, 25.0),  # a termination threshold
    }
    assert set(resume.refused_changes(changes)) == {"env.num_envs"}
    cfg = presets.t1_velocity()
    saved = OmegaConf.to_yaml(OmegaConf.structured(cfg))
    cfg.env.reward_weights = {**cfg.env.reward_weights, "stand_still": -2.0, "feet_air_time": 0.0}
    assert resume.refused_changes(resume.changed_settings(saved, cfg)) == {}


def test_a_dict_entry_added_or_removed_on_resume_reads_as_one_change():
    saved = OmegaConf.to_yaml(OmegaConf.structured(presets.t1_velocity()))
    cfg = presets.t1_velocity()
    cfg.env.reward_param_steps = {}  # the yaw-rate step removed
    cfg.env.reward_ramps = {**cfg.env.reward_ramps, "base_height": {"start_step": 0, "num_steps": 1, "weight": 15.0}}
    cfg.env.reward_ramps["feet_swing"] = {**cfg.env.reward_ramps["feet_swing"], "weight": 5.0}  # one leaf retuned
    cfg.algorithm.gamma = 0.995
    changes = resume.changed_settings(saved, cfg)
    assert len(changes) == 7  # 2 leaves of the step, 3 of the new ramp, 1 of the swing ramp, gamma
    assert resume.described_changes(changes, cfg) == {
        "algorithm.gamma": "0.99 -> 0.995",
        "env.reward_param_steps.track_ang_vel": "(removed)",
        "env.reward_ramps.base_height": "(added: {'start_step': 0, 'num_steps': 1, 'weight': 15.0})",
        "env.reward_ramps.feet_swing.weight": "10.0 -> 5.0",
    }


def test_a_setting_added_after_the_checkpoint_compares_with_its_class_default():
    cfg = presets.t1_velocity()
    saved = OmegaConf.to_container(OmegaConf.structured(cfg))
    del saved["env"]["privileged_critic"], saved["env"]["reward_param_steps"]  # a run from before they existed
    changes = resume.changed_settings(OmegaConf.to_yaml(saved), cfg)
    # privileged_critic's default (False) is what that run did; the preset's parameter step is new to it
    assert changes == {"env.reward_param_steps.track_ang_vel.params.std": (None, 0.5),
                       "env.reward_param_steps.track_ang_vel.start_step": (None, 60_000)}
    assert resume.refused_changes(changes) == {}
    cfg.env.privileged_critic = True  # not the default: a real change of the critic's inputs, refused
    changes = resume.changed_settings(OmegaConf.to_yaml(saved), cfg)
    assert resume.refused_changes(changes) == {"env.privileged_critic": (False, True)}


def test_a_resumed_run_continues_its_checkpoints_random_stream_whatever_the_seed(first_run, capsys):
    original = os.path.join(first_run, "point_mass", sorted(os.listdir(os.path.join(first_run, "point_mass")))[0])
    saved_seed = train.build_config(BASE).runner.seed
    states = []
    for seed in (saved_seed + 5, saved_seed + 6):
        cfg = train.build_config([*BASE, f"log_root={first_run}", "max_iterations=1", "--resume",
                                  f"load_run={original}", f"runner.seed={seed}"])
        capsys.readouterr()
        states.append(train.train(cfg).state)
    out = capsys.readouterr().out
    assert f"not applied on resume: runner.seed {saved_seed} -> {saved_seed + 6}; the run continues" in out
    first, second = states
    assert (jax.random.key_data(first.key) == jax.random.key_data(second.key)).all()
    for a, b in zip(jax.tree.leaves(first.params), jax.tree.leaves(second.params), strict=True):
        np.testing.assert_array_equal(a, b)
