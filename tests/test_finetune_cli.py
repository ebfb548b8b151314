"""``StudentFinetuneRecurrent`` on the command line: ``experiments/train.py policy.class_name=StudentFinetuneRecurrent
student=<distillation run directory>`` fine-tunes a distilled LSTM student with PPO (point mass, tiny sizes), and
each wrong combination is refused in one line with exit code 2."""

from __future__ import annotations

import os
import subprocess
import sys

import jax
import numpy as np
import pytest
import yaml

pytest.importorskip("onnx")

from agile_jax.training.distill_runner import DistillationRunner, finetune_from_run  # noqa: E402
from agile_jax.training.runner import OnPolicyRunner  # noqa: E402
from experiments import distill, train  # noqa: E402
from experiments.configs import get_preset, make_env  # noqa: E402
from experiments.train import ROOT  # noqa: E402
from tests.helpers import point_mass_config, point_mass_env  # noqa: E402
from tests.test_distillation_training import distill_config  # noqa: E402

FINETUNE = "policy.class_name=StudentFinetuneRecurrent"
TINY = ["config=point_mass", "num_envs=16", "runner.num_steps_per_env=8", "progress_bar=false"]


@pytest.fixture(scope="module")
def student_run(tmp_path_factory):
    """A recurrent (LSTM) student distilled for one iteration from a 2-iteration teacher: its run directory."""
    cfg = point_mass_config(num_envs=16, steps=8)
    teacher = OnPolicyRunner(point_mass_env(cfg), cfg)
    teacher.learn(2)
    out = tmp_path_factory.mktemp("teacher")
    teacher.export(str(out), formats=("onnx",))
    dcfg = distill_config(str(out / "policy.onnx"))
    dcfg.env.num_envs, dcfg.runner.num_steps_per_env = 8, 8  # another env count than the PPO run's
    run_dir = str(tmp_path_factory.mktemp("distill") / "run")
    runner = DistillationRunner(point_mass_env(dcfg), dcfg, log_dir=run_dir)
    runner.learn(1)
    runner.close()
    return run_dir, runner


def test_cli_finetunes_the_recurrent_student(student_run, tmp_path, capsys):
    run_dir, _ = student_run
    code = train.main([*TINY, FINETUNE, f"student={run_dir}", "max_iterations=1", f"log_root={tmp_path}"])
    out = capsys.readouterr()
    assert code == 0, out.err[-2000:]
    assert "StudentFinetuneRecurrent: the actor starts from the student of" in out.out
    (run,) = os.listdir(tmp_path / "point_mass")
    with open(tmp_path / "point_mass" / run / "config.yaml") as f:
        saved = yaml.safe_load(f)
    # The run records the concrete actor-critic it trained (eval, export and --resume read it as any PPO run).
    assert saved["policy"]["class_name"] == "ActorCriticRecurrent" and saved["policy"]["rnn_hidden_dim"] == 32
    assert saved["runner"]["obs_groups"]["actor"] == ["policy"]
    assert os.path.isdir(tmp_path / "point_mass" / run / "checkpoints")


def test_finetune_from_run_starts_from_the_saved_student(student_run):
    run_dir, distilled = student_run
    cfg = train.build_config([*TINY, FINETUNE])
    runner = finetune_from_run(make_env(cfg), cfg, run_dir, make_env)
    assert runner.networks.is_recurrent and runner.cfg.policy.class_name == "ActorCriticRecurrent"
    ours, theirs = jax.device_get((runner.state.params.actor, distilled.state.params.actor))
    for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(theirs)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert set(runner.state.params.by_network()) == {"actor", "critic"} and int(runner.state.iteration) == 0


def _saved_config(run_dir: str, tmp_path, **changes) -> str:
    """A copy of ``run_dir``'s config.yaml with ``section.key`` values changed (nothing else is read first)."""
    with open(os.path.join(run_dir, "config.yaml")) as f:
        saved = yaml.safe_load(f)
    for key, value in changes.items():
        section, name = key.split("__")
        saved[section][name] = value
    out = tmp_path / "_".join(changes)
    out.mkdir()
    with open(out / "config.yaml", "w") as f:
        yaml.safe_dump(saved, f)
    return str(out)


def test_wrong_combinations_are_refused_in_one_line(student_run, tmp_path, capsys):
    run_dir, _ = student_run
    mlp = _saved_config(run_dir, tmp_path, policy__class_name="StudentTrainedTeacher")
    ppo = _saved_config(run_dir, tmp_path, algorithm__class_name="PPO")
    cases = {
        (FINETUNE,): "needs the distilled student",
        (f"student={run_dir}",): "student= goes with policy.class_name=StudentFinetuneRecurrent",
        (FINETUNE, f"student={run_dir}", "runner.init_from=model_10.pt"): "keep one",
        (FINETUNE, f"student={tmp_path / 'missing'}"): "is not a run directory",
        (FINETUNE, f"student={mlp}"): "fine-tunes a recurrent one",
        (FINETUNE, f"student={ppo}"): "is a PPO run, not a distillation run",
    }
    for args, message in cases.items():
        assert train.main([*TINY, *args, f"log_root={tmp_path / 'logs'}"]) == 2, args
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1, (args, err)
    assert distill.main(["config=point_mass", f"teacher={run_dir}", FINETUNE]) == 2
    assert "python experiments/train.py" in capsys.readouterr().err
    cfg = get_preset("point_mass")
    cfg.policy.class_name = "StudentFinetuneRecurrent"  # the Python runner names the command line
    with pytest.raises(Exception, match="student=<distillation run directory>"):
        OnPolicyRunner(point_mass_env(point_mass_config()), cfg)
    logs = tmp_path / "logs" / "point_mass"
    assert not os.path.exists(logs) or not os.listdir(logs)  # no refused start left a run folder


def test_cli_exit_code_is_2_for_a_finetune_without_student():
    proc = subprocess.run([sys.executable, "experiments/train.py", "config=point_mass", FINETUNE], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0, proc.stderr
    assert "policy.class_name=StudentFinetuneRecurrent needs the distilled student" in proc.stderr
