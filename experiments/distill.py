"""Distil an exported teacher into a student: ``python experiments/distill.py config=<preset> teacher=<file>``.

Examples::

    python experiments/distill.py config=point_mass teacher=logs/point_mass/<run>/exported/policy.onnx
    python experiments/distill.py config=t1_velocity teacher=teacher.pt policy.class_name=StudentTrainedTeacherRecurrent
    python experiments/distill.py config=point_mass teacher=policy.onnx algorithm.gradient_length=8 --resume

The preset gives the env, the runner settings and the student's layout (its actor's hidden dims and
activation, its actor observation groups as ``runner.obs_groups.student``); the teacher reads the groups
recorded in its file, else ``runner.obs_groups.teacher``. Overrides use the distillation schema
(:class:`agile_jax.config.DistillationConfig`): ``policy.*`` (``class_name`` ``StudentTrainedTeacher`` |
``StudentTrainedTeacherRecurrent``, ``student_hidden_dims``, ``init_noise_std``, ``rnn_type``, ...) and
``algorithm.*`` (``num_learning_epochs``, ``gradient_length``, ``learning_rate``, ``max_grad_norm``,
``loss_type``, ``symmetry_cfg.*``). The student is exported next to the checkpoints at the end. PPO fine-tuning
of a recurrent student afterwards (AGILE's ``StudentFinetuneRecurrent``): ``python experiments/train.py
config=<preset> policy.class_name=StudentFinetuneRecurrent student=<this run's directory>``.
"""

from __future__ import annotations

import copy
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # XLA notes every program loaded from the cache
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from agile_jax import config as config_lib  # noqa: E402
from agile_jax.runtime import platform  # noqa: E402
from experiments import cli  # noqa: E402
from experiments.train import (  # noqa: E402
    config_or_none,
    export_final_policy,
    parse_args,
    resumed_line,
    run_directories,
)


def distillation_defaults(preset) -> config_lib.DistillationConfig:
    """A distillation config for a training preset: its env and runner, a student shaped like its actor."""
    runner = copy.deepcopy(preset.runner)
    runner.obs_groups = {"student": list(preset.runner.obs_groups.get("actor", ["policy"]))}
    runner.experiment_name = f"{preset.runner.experiment_name}_distill"
    policy = config_lib.StudentTeacherConfig(student_hidden_dims=list(preset.policy.actor_hidden_dims),
                                             activation=preset.policy.activation)
    return config_lib.DistillationConfig(env=copy.deepcopy(preset.env), policy=policy, runner=runner)


def build_config(argv: list[str]) -> config_lib.DistillationConfig:
    """The merged :class:`DistillationConfig` for a command line."""
    from agile_jax.validation import check_ranges
    from experiments.configs import get_preset

    teacher, argv = cli.split_named(argv, "teacher")
    preset, overrides, resume = parse_args(argv)
    cfg = config_lib.apply_overrides(distillation_defaults(get_preset(preset)), overrides)
    from agile_jax.networks.from_config import FINETUNE_CLASS, FINETUNE_USAGE

    if cfg.policy.class_name == FINETUNE_CLASS:  # the PPO stage after distillation, not a distillation student
        raise config_lib.ConfigError(f"policy.class_name={FINETUNE_CLASS} fine-tunes a distilled student with PPO "
                                     f"after this run: {FINETUNE_USAGE}")
    if teacher:
        cfg.policy.teacher_path = teacher
    if not cfg.policy.teacher_path:
        raise config_lib.ConfigError("no teacher: pass teacher=<policy.onnx|policy.pt> (or policy.teacher_path=...)")
    cfg.runner.resume = cfg.runner.resume or resume
    check_ranges(cfg)
    return cfg


def main(argv: list[str]) -> int:
    cfg = config_or_none(build_config, argv)
    if cfg is None:
        return 2
    platform.enable_compilation_cache()
    from agile_jax.training.distill_runner import DistillationRunner
    from experiments.configs import make_env

    run = cfg.runner
    log_dir, resume_dir = run_directories(cfg)
    env = make_env(cfg)
    try:
        runner = DistillationRunner(env, cfg, log_dir=log_dir)
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"[agile_jax] distilling {cfg.policy.teacher_path} ({runner.teacher.description.get('format')}, groups "
          f"{runner.teacher_groups}) into {cfg.policy.class_name}; {env.num_envs} envs x {run.num_steps_per_env} "
          f"steps; logging to {log_dir}")
    if resume_dir:
        meta = runner.load(resume_dir, None if run.load_checkpoint < 0 else run.load_checkpoint)
        print(resumed_line(resume_dir, meta["iteration"], run.max_iterations))
    try:
        runner.learn(run.max_iterations)  # RSL-RL's learn(num_learning_iterations): that many more
    finally:
        runner.close()
    print(f"[agile_jax] done: iteration {runner.current_learning_iteration}, mean episode return "
          f"{runner.episodes.mean_return}, checkpoints in {os.path.join(log_dir, 'checkpoints')}")
    export_final_policy(runner)
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main, sys.argv[1:]))
