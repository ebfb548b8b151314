"""Runs NVIDIA WBC-AGILE's own sim-to-MuJoCo evaluator on a fresh export of this package and says whether it completed.

Usage::

    python experiments/check_agile_interop.py --agile PATH_TO_AGILE_CHECKOUT [--robot t1|g1]
        [--rnn none|lstm|gru] [--format auto|onnx|torchscript] [--export DIR] [--duration 2.0] [--venv DIR]

A randomly initialised policy of the velocity task (or the exported directory given with ``--export``) is
exported with ``policy.yaml``; the robot's MuJoCo model is written as MJCF (with root ``angular-velocity`` /
``linear-velocity`` sensors where the model has none, which AGILE's simulation reads); then AGILE's
``scripts/sim2mujoco_eval.py`` runs headless in a separate virtual environment (created on first use with
``torch==2.13.0``, ``mujoco``, ``onnxruntime`` and ``pyyaml`` from the package index). ``--format auto`` gives
AGILE the ONNX file for an MLP and ``policy.pt`` for a recurrent policy (its RNN path runs TorchScript with an
explicit hidden state). Exit code 0 when AGILE's evaluator completed, 1 when it did not, 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_VENV = os.path.join(os.path.expanduser("~"), ".cache", "agile_jax", "agile_eval_venv")
VENV_PACKAGES = ("torch==2.13.0", "mujoco", "onnxruntime", "pyyaml", "numpy")
EVALUATOR = os.path.join("scripts", "sim2mujoco_eval.py")


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The command line (argparse exits 2 on unknown options)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agile", required=True, help="path to a WBC-AGILE checkout")
    parser.add_argument("--robot", choices=("t1", "g1"), default="t1")
    parser.add_argument("--rnn", choices=("none", "lstm", "gru"), default="none", help="recurrent actor type")
    parser.add_argument("--format", choices=("auto", "onnx", "torchscript"), default="auto")
    parser.add_argument("--export", default=None, help="an exported directory to check instead of a fresh export")
    parser.add_argument("--duration", type=float, default=2.0, help="seconds simulated by AGILE's evaluator")
    parser.add_argument("--venv", default=DEFAULT_VENV, help="virtual environment for AGILE's evaluator")
    return parser.parse_args(argv)


def _fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


def check_checkout(path: str) -> str:
    """The absolute path of an AGILE checkout holding the evaluator and ``agile/sim2mujoco``."""
    path = os.path.abspath(path)
    if not (os.path.isfile(os.path.join(path, EVALUATOR)) and os.path.isdir(os.path.join(path, "agile", "sim2mujoco"))):
        _fail(f"'{path}' is not a WBC-AGILE checkout (no {EVALUATOR} and agile/sim2mujoco/)")
    return path


def ensure_venv(venv: str) -> str:
    """The Python of ``venv``, created and filled with the evaluator's dependencies when they do not import."""
    python = os.path.join(venv, "bin", "python")
    probe = [python, "-c", "import torch, mujoco, onnxruntime, yaml"]
    if os.path.isfile(python) and subprocess.run(probe, capture_output=True).returncode == 0:
        return python
    print(f"creating {venv} with {' '.join(VENV_PACKAGES)} ...", flush=True)
    subprocess.run([sys.executable, "-m", "venv", venv], check=True)
    subprocess.run([python, "-m", "pip", "install", "-q", *VENV_PACKAGES], check=True)
    return python


def fresh_export(robot: str, rnn: str, out: str) -> str:
    """A randomly initialised velocity-task policy of ``robot`` exported (ONNX, TorchScript, policy.yaml) to ``out``."""
    import jax

    from agile_jax.export import export_policy
    from agile_jax.networks.actor_critic import ActorCritic
    from agile_jax.networks.recurrent import ActorCriticRecurrent
    from envs.tasks.velocity import G1VelocityConfig, T1VelocityConfig, VelocityEnv

    env = VelocityEnv(T1VelocityConfig() if robot == "t1" else G1VelocityConfig())
    args = (dict(env.observation_shapes), {"actor": ["policy"], "critic": ["critic"]}, env.action_size,
            (64, 32), (32,), "elu")
    net = ActorCritic(*args) if rnn == "none" else ActorCriticRecurrent(*args, rnn_type=rnn, rnn_hidden_dim=32,
                                                                         actor_obs_normalization=True)
    report = export_policy(net, net.init(jax.random.key(0)), {}, out, env=env)
    print(f"exported {robot} {rnn if rnn != 'none' else 'mlp'} policy to {out}: parity "
          f"{'passed' if report['passed'] else 'FAILED'}, max abs error {report['max_abs_error']}")
    return out


def write_mjcf(robot: str, path: str, physics_dt: float) -> str:
    """The robot's MuJoCo model as MJCF, with root velocity sensors named as AGILE's simulation looks them up."""
    import dataclasses

    import mujoco

    from envs.robots import assets, g1, t1

    solver = dataclasses.replace(assets.DEFAULT_SOLVER, timestep=physics_dt)
    spec = (t1 if robot == "t1" else g1).make_spec(solver)
    model = spec.compile()
    free = next(j for j in range(model.njnt) if model.jnt_type[j] == mujoco.mjtJoint.mjJNT_FREE)
    root = model.body(int(model.jnt_bodyid[free])).name
    names = {model.sensor(i).name for i in range(model.nsensor)}
    # Gyro / velocimeter at the root origin read qvel[3:6] and R^T qvel[0:3] (root frame).
    spec.body(root).add_site(name="agile_root_frame")
    for name, kind in (("angular-velocity", mujoco.mjtSensor.mjSENS_GYRO),
                       ("linear-velocity", mujoco.mjtSensor.mjSENS_VELOCIMETER)):
        if name not in names:
            spec.add_sensor(type=kind, name=name, objtype=mujoco.mjtObj.mjOBJ_SITE, objname="agile_root_frame")
    spec.compile()
    with open(path, "w") as f:
        f.write(spec.to_xml())
    return path


def run_evaluator(python: str, agile: str, checkpoint: str, config: str, mjcf: str, duration: float) -> dict:
    """AGILE's evaluator, headless on CPU: completion, steps, obs dim and policy wrapper it reports, and its output."""
    cmd = [python, EVALUATOR, "--checkpoint", checkpoint, "--config", config, "--mjcf", mjcf, "--duration",
           str(duration), "--no-viewer", "--device", "cpu", "--disable-keyboard", "--verbose", "--log-freq", "25"]
    env = {**{k: v for k, v in os.environ.items() if k != "DISPLAY"}, "PYTHONPATH": agile}
    proc = subprocess.run(cmd, cwd=agile, env=env, capture_output=True, text=True, timeout=1800)
    output = proc.stdout + proc.stderr
    done = re.search(r"Evaluation complete! Ran (\d+) steps", output)
    dim = re.search(r"Total observation dim: (\d+)", output)
    wrapper = re.search(r"Policy type: (\w+)", output)
    return {"completed": proc.returncode == 0 and done is not None, "steps": int(done.group(1)) if done else None,
            "obs_dim": int(dim.group(1)) if dim else None, "wrapper": wrapper.group(1) if wrapper else None,
            "returncode": proc.returncode, "output": output}


def _policy_file(export_dir: str, fmt: str) -> str:
    """The file AGILE's evaluator should load: ONNX for an MLP, TorchScript for a recurrent policy (``auto``)."""
    from agile_jax.export.io_descriptor import read_io_descriptor

    desc = read_io_descriptor(os.path.join(export_dir, "policy.yaml"))
    if fmt == "auto":
        fmt = "torchscript" if desc["policy"].get("type") == "RNN" else "onnx"
    name = desc["policy"]["files"].get(fmt)
    if not name:
        _fail(f"the export in '{export_dir}' has no {fmt} file")
    return os.path.join(export_dir, name)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    agile = check_checkout(args.agile)
    work = tempfile.mkdtemp(prefix="agile_interop_")
    if args.export is not None and not os.path.isfile(os.path.join(args.export, "policy.yaml")):
        _fail(f"no policy.yaml in '{args.export}'")
    export_dir = os.path.abspath(args.export) if args.export else fresh_export(args.robot, args.rnn,
                                                                               os.path.join(work, "exported"))
    from agile_jax.export.io_descriptor import read_io_descriptor

    desc = read_io_descriptor(os.path.join(export_dir, "policy.yaml"))
    robot = "g1" if "g1" in str(desc["articulations"]["robot"].get("name", "")) else "t1"
    mjcf = write_mjcf(robot, os.path.join(work, f"{robot}.xml"), float(desc["scene"]["physics_dt"]))
    checkpoint = _policy_file(export_dir, args.format)
    result = run_evaluator(ensure_venv(args.venv), agile, checkpoint, os.path.join(export_dir, "policy.yaml"), mjcf,
                           args.duration)
    tail = "\n".join(line for line in result["output"].splitlines() if line.strip())
    print("\n".join(tail.splitlines()[-12:]))
    expected = int(desc["policy"]["inputs"][0]["shape"][-1])
    print(f"AGILE sim2mujoco_eval on {os.path.basename(checkpoint)} ({robot}, policy.type "
          f"{desc['policy'].get('type')}, AGILE wrapper {result['wrapper']}): "
          f"{'COMPLETED' if result['completed'] else 'DID NOT COMPLETE'} "
          f"(steps {result['steps']}, AGILE obs dim {result['obs_dim']} vs exported input {expected}, "
          f"exit code {result['returncode']})")
    return 0 if result["completed"] and result["obs_dim"] == expected else 1


if __name__ == "__main__":
    sys.exit(main())
