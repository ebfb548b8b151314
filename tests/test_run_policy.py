"""A run of this package as a teacher: ``load_policy(<run dir>)`` acts as the run's inference policy (MLP, GRU and
CNN actors, newest or a chosen checkpoint, its ONNX export), labels a TPPO rollout, and bad paths end in one line
(the command line exits 2)."""

from __future__ import annotations

import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from agile_jax.io import checkpoint as ckpt
from agile_jax.networks.actor_critic import make_inference_fn
from agile_jax.networks.recurrent import reset_state
from agile_jax.policies.load import load_policy
from agile_jax.policies.run import from_run, is_run_checkpoint, run_config
from agile_jax.training.runner import OnPolicyRunner
from tests.helpers import point_mass_config, point_mass_env

TOL = 1e-6
SHAPES = {"policy": (4,), "critic": (5,)}  # the point mass's groups


def _obs(n: int = 64, seed: int = 0) -> dict:
    """Random point-mass observations, scaled like the env's (positions and velocities of order 1)."""
    k1, k2 = jax.random.split(jax.random.key(seed))
    return {"policy": jax.random.normal(k1, (n, 4)), "critic": jax.random.normal(k2, (n, 5))}


def _max_diff(a, b) -> float:
    return float(np.max(np.abs(np.asarray(a) - np.asarray(b))))


@pytest.fixture(scope="module")
def mlp_run(tmp_path_factory):
    """A point-mass run whose actor reads the critic group (5 values), checkpoints at iterations 2 and 4."""
    cfg = point_mass_config()
    cfg.runner.obs_groups = {"actor": ["critic"], "critic": ["critic"]}
    run_dir = str(tmp_path_factory.mktemp("teacher_run") / "run")
    runner = OnPolicyRunner(point_mass_env(cfg), cfg, log_dir=run_dir)
    runner.learn(4)  # save_interval 2: checkpoints 2 and 4
    runner.close()
    return runner, run_dir


def test_a_run_directory_acts_as_its_inference_policy(mlp_run, tmp_path):
    runner, run_dir = mlp_run
    assert is_run_checkpoint(run_dir) and sorted(os.listdir(os.path.join(run_dir, "checkpoints"))) == ["2", "4"]
    teacher = load_policy(run_dir)
    assert (teacher.obs_dim, teacher.action_dim, teacher.obs_groups, teacher.is_recurrent) == (5, 2, ("critic",), False)
    assert teacher.description["iteration"] == 4
    obs = _obs()
    expected = runner.get_inference_policy()(obs)
    actions, state = jax.jit(teacher.bind(["critic"], SHAPES))(obs, teacher.init_state(64))
    assert state == () and _max_diff(actions, expected) < TOL
    assert _max_diff(teacher.apply(obs["critic"], ())[0], expected) < TOL  # the flat input
    # The learnt state-independent std, for sampled labels (TPPO's action_labels_from_sample).
    std = runner.networks.action_std(runner.state.params)
    assert _max_diff(teacher.action_std, std) < TOL and _max_diff(std, 1.0) > 1e-3  # trained away from 1
    # Other groups of the same width feed the concatenated input in their order.
    split = {"a": obs["critic"][:, :2], "b": obs["critic"][:, 2:]}
    assert _max_diff(teacher.bind(["a", "b"], {"a": (2,), "b": (3,)})(split, ())[0], expected) < TOL
    with pytest.raises(ValueError, match=r"reads 5 observations \(its groups \['critic'\]\) but the groups "
                                         r"\['policy'\] give 4; set runner.obs_groups.teacher"):
        teacher.bind(["policy"], SHAPES)
    # The run's ONNX export is the same policy.
    runner.export(str(tmp_path / "exported"), formats=("onnx",))
    exported = load_policy(str(tmp_path / "exported" / "policy.onnx"))
    assert _max_diff(exported.bind(["critic"], SHAPES)(obs, ())[0], actions) < TOL


def test_a_checkpoint_directory_picks_its_iteration(mlp_run):
    runner, run_dir = mlp_run
    checkpoints = os.path.join(run_dir, "checkpoints")
    newest, second = load_policy(run_dir), load_policy(os.path.join(checkpoints, "2"))
    assert second.description["iteration"] == 2 and load_policy(checkpoints).sha256 == newest.sha256 != second.sha256
    restored, meta = ckpt.restore(run_dir, 2, runner.state.replace(target_iteration=None))  # per call, not stored
    assert meta["iteration"] == 2
    obs = _obs(seed=1)
    expected = make_inference_fn(runner.networks)(restored.params, restored.normalizers)(obs)
    actions = second.bind(["critic"], SHAPES)(obs, ())[0]
    assert _max_diff(actions, expected) < TOL
    assert _max_diff(actions, newest.bind(["critic"], SHAPES)(obs, ())[0]) > 1e-3  # two iterations of training apart


def test_tppo_labels_a_rollout_with_the_run_teachers_actions(mlp_run):
    teacher_runner, run_dir = mlp_run
    cfg = point_mass_config()
    cfg.algorithm.tppo_cfg.teacher_policy = run_dir  # labels on the critic group, the one the teacher's actor read
    student = OnPolicyRunner(point_mass_env(cfg), cfg)
    tr = student.trainer.collect(student.state).transitions
    labels = np.asarray(tr.extras["act"]["tppo"]["labels"])  # [T, N, A]
    flat = {k: np.asarray(v).reshape(-1, *v.shape[2:]) for k, v in tr.obs.items()}
    expected = np.asarray(teacher_runner.get_inference_policy()(flat)).reshape(labels.shape)
    assert labels.shape == (8, 16, 2) and _max_diff(labels, expected) < TOL
    assert float(np.std(expected)) > 1e-2  # the labels vary over the rollout


def test_a_recurrent_run_carries_its_state_like_the_stateful_policy(tmp_path):
    cfg = point_mass_config()
    cfg.policy.class_name, cfg.policy.rnn_type, cfg.policy.rnn_hidden_dim = "ActorCriticRecurrent", "gru", 16
    runner = OnPolicyRunner(point_mass_env(cfg), cfg, log_dir=str(tmp_path / "run"))
    runner.learn(2)
    runner.close()
    teacher = load_policy(str(tmp_path / "run"))
    assert teacher.is_recurrent and (teacher.obs_dim, teacher.obs_groups) == (4, ("policy",))
    policy, act = runner.get_inference_policy(), jax.jit(teacher.bind(["policy"], SHAPES))
    state, obs = teacher.init_state(16), _obs(16, seed=2)
    firsts = []
    for step in range(4):
        if step == 2:  # episodes of the first half end: both states restart there
            dones = jnp.arange(16) < 8
            policy.reset(dones)
            state = reset_state(state, dones)
        expected = policy(obs)
        actions, state = act(obs, state)
        assert _max_diff(actions, expected) < TOL, step
        firsts.append(np.asarray(actions))
    assert _max_diff(firsts[1], firsts[0]) > 1e-4  # the same observation, another state: other actions
    assert _max_diff(firsts[2][:8], firsts[0][:8]) < TOL  # restarted rows act as at the first step


def test_a_state_dependent_std_run_acts_with_its_mean(tmp_path):
    cfg = point_mass_config()
    cfg.policy.distribution_cfg = {"class_name": "HeteroscedasticGaussianDistribution", "init_std": 0.5}
    runner = OnPolicyRunner(point_mass_env(cfg), cfg)
    runner.save(str(tmp_path / "run"))
    teacher = load_policy(str(tmp_path / "run"))
    assert (teacher.obs_dim, teacher.action_dim, teacher.action_std) == (4, 2, None)  # the std depends on obs
    obs = _obs(seed=4)
    assert _max_diff(teacher.bind(["policy"], SHAPES)(obs, ())[0], runner.get_inference_policy()(obs)) < TOL


def test_a_cnn_run_is_built_on_the_env_shapes(tmp_path):
    from agile_jax.config import PolicyConfig
    from envs.core import VecEnv
    from envs.tasks.point_mass_grid import PointMassGrid, PointMassGridConfig

    cfg = point_mass_config(num_envs=8)
    cfg.env = PointMassGridConfig(num_envs=8, episode_length=40)
    cfg.policy = PolicyConfig(class_name="ActorCriticCNN", actor_hidden_dims=[16], critic_hidden_dims=[16],
                              actor_obs_normalization=True,
                              actor_cnn_cfg={"output_channels": [4], "kernel_size": 3, "stride": [2]})
    cfg.runner.obs_groups = {"actor": ["policy", "grid"], "critic": ["critic", "grid"]}
    single = PointMassGrid(cfg.env)
    runner = OnPolicyRunner(VecEnv(single, 8), cfg, log_dir=str(tmp_path / "run"))
    runner.learn(1)  # the normaliser of the 1-D group moves off its initial state
    teacher = load_policy(str(tmp_path / "run"))
    assert (teacher.obs_dim, teacher.action_dim, teacher.obs_groups) == (-1, 2, ("policy", "grid"))
    shapes = single.observation_shapes
    obs = {k: np.asarray(v) for k, v in runner.state.env_state.obs.items()}
    obs["policy"] = np.asarray(jax.random.normal(jax.random.key(3), (8, 2)))  # velocities, not all zero
    actions = teacher.bind(["policy", "grid"], shapes)(obs, ())[0]
    assert _max_diff(actions, runner.get_inference_policy()(obs)) < TOL
    with pytest.raises(ValueError, match=r"reads other shapes .*the groups \['policy', 'critic'\]"):
        teacher.bind(["policy", "critic"], shapes)


def test_bad_run_paths_end_in_one_line(mlp_run, tmp_path):
    _, run_dir = mlp_run
    (tmp_path / "empty").mkdir()
    (tmp_path / "unsaved" / "checkpoints").mkdir(parents=True)
    damaged = tmp_path / "damaged"
    shutil.copytree(run_dir, damaged)
    with open(damaged / "checkpoints" / "4" / "meta" / "metadata", "a") as f:
        f.write(" ")
    assert not is_run_checkpoint(str(tmp_path / "empty")) and is_run_checkpoint(str(tmp_path / "unsaved"))
    cases = [
        (tmp_path / "empty", "has no checkpoints directory; pass a run directory of experiments/train.py"),
        (tmp_path / "unsaved", "holds no complete checkpoint in"),
        (f"{run_dir}/checkpoints/3", r"has no checkpoint 3; available: \[2, 4\]"),
        (damaged, "teacher checkpoint 4 in .* is damaged \\(file 'meta/metadata' changed after the save\\); pass "
                  f"'{damaged}/checkpoints/2'"),
    ]
    for path, message in cases:
        with pytest.raises(ValueError, match=message) as err:
            load_policy(str(path))
        assert len(str(err.value).splitlines()) == 1
    with pytest.raises(FileNotFoundError, match="or a run directory of experiments/train.py"):
        load_policy(str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="is a distillation run; export its student"):
        run_config("algorithm:\n  class_name: Distillation\n", "distill_run")
    with pytest.raises(ValueError, match="uses algorithm.estimator_cfg, whose actor reads more"):
        run_config("algorithm:\n  estimator_cfg:\n    enabled: true\n", "estimator_run")
    assert from_run(run_dir).sha256 == load_policy(run_dir).sha256


def test_the_command_line_refuses_an_empty_teacher_directory(tmp_path, capsys):
    from experiments import cli, train

    (tmp_path / "empty").mkdir()
    code = cli.run(train.main, ["config=point_mass", f"algorithm.tppo_cfg.teacher_policy={tmp_path / 'empty'}",
                                f"runner.log_root={tmp_path / 'logs'}", "runner.progress_bar=false"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert err.startswith(f"error: algorithm.tppo_cfg: teacher '{tmp_path / 'empty'}' has no checkpoints directory")
    assert not list((tmp_path / "logs").glob("*/*"))  # no run folder left behind
