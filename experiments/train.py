"""Train a policy: ``python experiments/train.py config=<preset> [key=value ...] [--resume]``.

Examples::

    python experiments/train.py config=t1_velocity
    python experiments/train.py config=t1_velocity num_envs=256 algorithm.learning_rate=3e-4
    python experiments/train.py config=cartpole_balance --resume            # continue the latest run
    python experiments/train.py config=cartpole_balance load_run=2026-11-22_10-00-00 load_checkpoint=40
    python experiments/train.py config=point_mass init_from=/path/to/rsl_rl_run/model_1500.pt
    python experiments/train.py config=point_mass load_run=/path/to/rsl_rl_run load_checkpoint=1500
    python experiments/train.py config=point_mass policy.class_name=StudentFinetuneRecurrent \
        student=logs/point_mass_distill/<run>      # PPO from a distilled recurrent student, fresh critic
    python experiments/train.py config=t1_velocity init_from=logs/t1_velocity/<run> init_from_max_std=0.35

Overrides use RSL-RL's names (``runner.max_iterations``, ``algorithm.num_mini_batches`` ...); a unique
leaf name such as ``num_envs`` or ``max_iterations`` is accepted on its own. A resumed run writes into a
new run directory and leaves the old one untouched. ``init_from`` (or ``load_run`` naming an RSL-RL run folder or
``model_<it>.pt``) starts from an RSL-RL 5.x checkpoint's networks with a fresh optimiser; ``init_from=<agile_jax
run directory or its checkpoints/<it>>`` does the same from one of our runs, whose env settings, rewards and
extensions may differ (a fine-tuning stage), and ``runner.init_from_max_std=<s>`` caps the loaded action std.
``policy.class_name=StudentFinetuneRecurrent`` (AGILE's) with ``student=<run directory>`` fine-tunes the recurrent
student of an ``experiments/distill.py`` run with PPO: the actor is the student's (layout, weights, action std,
normaliser), the critic the preset's, fresh; the one needs the other.
"""

from __future__ import annotations

import datetime
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # XLA notes every program loaded from the cache
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from agile_jax import config as config_lib  # noqa: E402
from agile_jax.runtime import platform  # noqa: E402
from agile_jax.validation import check_ranges  # noqa: E402
from experiments import cli  # noqa: E402

DEFAULT_PRESET = "cartpole_balance"


def parse_args(argv: list[str]) -> tuple[str, list[str], bool]:
    """Splits argv into ``(preset, overrides, resume)``."""
    preset, overrides, resume = DEFAULT_PRESET, [], False
    for arg in argv:
        if arg in ("--resume", "resume=true", "resume=True"):
            resume = True
        elif arg in ("-h", "--help"):
            print(__doc__)
            raise SystemExit(0)
        elif arg.startswith("config="):
            preset = arg.split("=", 1)[1]
        elif arg.startswith("--"):
            raise config_lib.ConfigError(f"unknown flag '{arg}'; flags: --resume, --help; settings are key=value")
        else:
            overrides.append(arg)
    return preset, overrides, resume


def check_student(cfg, student: str) -> None:
    """Refuses, in one line, ``student=`` without ``policy.class_name=StudentFinetuneRecurrent`` and the other way
    round, and a student together with ``runner.init_from`` (two sources of the actor)."""
    from agile_jax.networks.from_config import FINETUNE_CLASS, FINETUNE_USAGE

    finetune = cfg.policy.class_name == FINETUNE_CLASS
    if finetune and not student:
        raise config_lib.ConfigError(f"policy.class_name={FINETUNE_CLASS} needs the distilled student: "
                                     f"{FINETUNE_USAGE}")
    if student and not finetune:
        raise config_lib.ConfigError(f"student= goes with policy.class_name={FINETUNE_CLASS} (PPO from a distilled "
                                     f"student), not '{cfg.policy.class_name}': {FINETUNE_USAGE}")
    if student and cfg.runner.init_from:
        raise config_lib.ConfigError(f"student= and runner.init_from both give the actor's weights; keep one "
                                     f"(runner.init_from='{cfg.runner.init_from}')")


def build_config(argv: list[str]):
    """The merged :class:`TrainConfig` for a command line (a preset's CPU defaults first when JAX has no
    accelerator, then the user's overrides)."""
    from experiments.configs import get_preset

    preset, overrides, resume = parse_args(argv)
    base = get_preset(preset)
    cfg = config_lib.apply_overrides(base, cpu_defaults(preset, base, overrides) + overrides)
    if resume:
        cfg.runner.resume = True
    check_ranges(cfg)
    return cfg


def build_run(argv: list[str]):
    """``(config, student run directory or "")`` for a command line: ``student=`` split off, then checked against
    ``policy.class_name`` (:func:`check_student`)."""
    student, argv = cli.split_named(argv, "student")
    cfg = build_config(argv)
    check_student(cfg, student)
    return cfg, student


def cpu_defaults(preset: str, base, overrides: list[str]) -> list[str]:
    """The preset's CPU defaults (``experiments.configs.CPU_DEFAULTS``) that the user did not set, when JAX runs on
    the CPU; each picked one is printed. On a GPU the preset's own values stay."""
    from experiments.configs import CPU_DEFAULTS

    if preset not in CPU_DEFAULTS:
        return []
    import jax

    if jax.default_backend() != "cpu":
        return []
    keys = config_lib.leaf_keys(base)
    given = {config_lib.resolve_key(item.split("=", 1)[0].strip(), keys) for item in overrides if "=" in item}
    picked = [item for item in CPU_DEFAULTS[preset]
              if config_lib.resolve_key(item.split("=", 1)[0], keys) not in given]
    if picked:
        say(f"[agile_jax] no accelerator: {preset} uses its CPU defaults {' '.join(picked)} (override any of them)")
    return picked


def find_resume_dir(cfg, experiment_dir: str) -> str:
    """The run directory to resume from (``load_run`` name or path, else the newest run)."""
    run = cfg.runner
    if run.load_run:
        path = run.load_run if os.path.isdir(run.load_run) else os.path.join(experiment_dir, run.load_run)
        if not os.path.isdir(path):
            raise config_lib.ConfigError(f"load_run='{run.load_run}' not found (looked in {experiment_dir})")
        return path
    runs = []
    if os.path.isdir(experiment_dir):
        runs = sorted(d for d in os.listdir(experiment_dir) if has_intact_checkpoint(os.path.join(experiment_dir, d)))
    if not runs:
        raise config_lib.ConfigError(f"--resume: no earlier run with an intact checkpoint in {experiment_dir}")
    return os.path.join(experiment_dir, runs[-1])


def has_intact_checkpoint(run_dir: str) -> bool:
    """Whether ``run_dir/checkpoints`` holds a checkpoint whose checksums verify (a failed start holds none)."""
    from agile_jax.io import checkpoint

    directory = os.path.join(run_dir, "checkpoints")
    if not os.path.isdir(directory):
        return False
    steps = [int(name) for name in os.listdir(directory) if name.isdigit()]
    return bool(checkpoint.intact_steps(directory, steps))


def run_directories(cfg) -> tuple[str, str | None]:
    """``(new run directory, run directory to resume from or None)`` under ``log_root/experiment_name``."""
    run = cfg.runner
    experiment_dir = os.path.abspath(os.path.join(run.log_root, run.experiment_name))
    from agile_jax.training.init_from import rsl_rl_checkpoint_in

    # An RSL-RL run folder (model_<it>.pt files) in load_run starts this run from that checkpoint.
    rsl_rl = rsl_rl_checkpoint_in(run.load_run, run.load_checkpoint, experiment_dir) if run.load_run else None
    if rsl_rl:
        run.init_from, run.load_run, run.resume = rsl_rl, "", False
    resume_dir = find_resume_dir(cfg, experiment_dir) if (run.resume or run.load_run) else None
    from agile_jax.runtime.distributed import broadcast_text

    stamp = datetime.datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    name = stamp + (f"_{run.run_name}" if run.run_name else "")
    path = claim_run_dir(os.path.join(experiment_dir, name)) if _is_main() else ""
    return broadcast_text(path), resume_dir  # process 0's folder on every host


def _is_main() -> bool:
    import jax

    return jax.process_index() == 0


def claim_run_dir(path: str) -> str:
    """Creates ``path`` atomically; on a collision (two runs started in the same second) ``path_2``, ``path_3`` ..."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    candidate, suffix = path, 1
    while True:
        try:
            os.mkdir(candidate)
            return candidate
        except FileExistsError:
            suffix += 1
            candidate = f"{path}_{suffix}"


def discard_if_empty(log_dir: str) -> None:
    """Removes a run folder that holds no intact checkpoint (a start that failed before its first save)."""
    import shutil

    if _is_main() and os.path.isdir(log_dir) and not has_intact_checkpoint(log_dir):
        shutil.rmtree(log_dir, ignore_errors=True)


def config_or_none(build, argv: list[str]):
    """``build(argv)``, or ``None`` after printing its :class:`ConfigError` (the caller exits with code 2)."""
    try:
        return build(argv)
    except config_lib.ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return None


def start_processes(cfg) -> bool:
    """Process-wide settings that must precede the first JAX computation, then multi-host start-up."""
    from agile_jax.runtime import distributed, precision

    try:
        precision.configure_determinism(cfg.runner.deterministic)
    except precision.PrecisionError as err:
        raise config_lib.ConfigError(str(err)) from None
    distributed.initialize_from_environment()
    platform.enable_compilation_cache()
    return True


def say(message: str) -> None:
    """Prints on process 0 only (every process of a multi-host run runs this script)."""
    import jax

    if jax.process_index() == 0:
        print(message, flush=True)


def report_changes(changes: dict, cfg) -> None:
    """Prints the settings a resumed run changed and applied, and those its restored state overrides."""
    from agile_jax.training.resume import NOT_APPLIED, described_changes

    described = described_changes(changes, cfg)

    def listed(keys: list[str]) -> str:
        return ", ".join(f"{k} {described[k]}" for k in keys)

    applied = [k for k in described if k not in NOT_APPLIED]
    kept = [k for k in described if k in NOT_APPLIED]
    if applied:
        say(f"[agile_jax] settings changed since the checkpoint (applied): {listed(applied)}")
    if kept:
        say(f"[agile_jax] not applied on resume: {listed(kept)}; the run continues the checkpoint's random stream "
            "(its PRNG key)")


def resumed_line(resume_dir: str, iteration: int, max_iterations: int) -> str:
    """Where a resumed run starts and stops: ``max_iterations`` more iterations, as RSL-RL's ``learn``."""
    return (f"[agile_jax] resumed from {resume_dir} at iteration {iteration}; runs {max_iterations} more "
            f"(runner.max_iterations), to iteration {iteration + max_iterations}")


def train(cfg, student: str = ""):
    """Builds the env and runner, resumes if asked, and trains ``max_iterations`` iterations (more, when
    resumed: RSL-RL's ``learn(num_learning_iterations)``); returns the runner. With ``student`` (a distillation
    run directory, ``policy.class_name=StudentFinetuneRecurrent``) the actor starts from its student."""
    from agile_jax.training import resume
    from agile_jax.training.runner import OnPolicyRunner
    from experiments.configs import make_env

    notice = platform.accelerator_notice()
    if notice:
        say(notice)
    run = cfg.runner
    log_dir, resume_dir = run_directories(cfg)
    try:
        env = make_env(cfg)
        say(f"[agile_jax] {type(cfg.env).__name__}: {env.num_envs} envs x {run.num_steps_per_env} steps; "
            f"logging to {log_dir}")
        if student:
            from agile_jax.training.distill_runner import finetune_from_run

            runner = finetune_from_run(env, cfg, student, make_env, log_dir=log_dir)
            say(f"[agile_jax] {cfg.policy.class_name}: the actor starts from the student of {student}, the "
                "critic fresh")
        else:
            runner = OnPolicyRunner(env, cfg, log_dir=log_dir)
        if resume_dir:
            meta = runner.load(resume_dir, None if run.load_checkpoint < 0 else run.load_checkpoint)
            say(resumed_line(resume_dir, meta["iteration"], run.max_iterations))
            report_changes(resume.apply_overrides(runner, meta["config"]), runner.cfg)
    except BaseException:
        discard_if_empty(log_dir)  # nothing of this run was saved: leave no empty folder behind
        raise
    try:
        runner.learn(run.max_iterations)  # RSL-RL's learn(num_learning_iterations): that many more
    except BaseException:
        runner.close()
        discard_if_empty(log_dir)
        raise
    runner.close()
    say(f"[agile_jax] done: iteration {runner.current_learning_iteration}, mean episode return "
        f"{runner.episodes.mean_return}, checkpoints in {os.path.join(log_dir, 'checkpoints')}")
    return runner


def main(argv: list[str]) -> int:
    built = config_or_none(build_run, argv)
    if built is None or not config_or_none(start_processes, built[0]):
        return 2
    cfg, student = built
    from agile_jax.io.checkpoint import CheckpointError
    from agile_jax.runtime.signals import TrainingInterrupted

    try:
        runner = train(cfg, student)
    except TrainingInterrupted as stop:
        say(f"[agile_jax] {stop}; continue with --resume (same overrides)")
        return stop.exit_code
    except (config_lib.ConfigError, CheckpointError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    import jax

    if jax.process_index() == 0:  # one writer for the exported policy
        export_final_policy(runner)
    return 0


def export_final_policy(runner) -> None:
    """Exports the final policy next to the checkpoints (TorchScript only when torch is installed)."""
    import importlib.util

    formats = ("onnx", "torchscript") if importlib.util.find_spec("torch") else ("onnx",)
    if importlib.util.find_spec("onnx") is None or importlib.util.find_spec("onnxruntime") is None:
        print("[agile_jax] export skipped: install the 'export' extra for policy.onnx / policy.pt")
        return
    report = runner.export(formats=formats)
    worst = {fmt: max(per_set.values()) for fmt, per_set in report["max_abs_error"].items()}
    print(f"[agile_jax] exported {', '.join(formats)} to {os.path.join(runner.log_dir, 'exported')} "
          f"(max-abs error vs JAX: {', '.join(f'{k} {v:.2g}' for k, v in worst.items())})")


if __name__ == "__main__":
    sys.exit(cli.run(main, sys.argv[1:]))
