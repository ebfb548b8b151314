"""``policy.yaml`` as NVIDIA WBC-AGILE's sim-to-MuJoCo evaluator reads it.

The schema below is written from what AGILE's evaluator (``agile/sim2mujoco``) reads: term names it knows,
``overloads`` with per-term history, per-frame shapes, joint offsets, a raw-action clip, ``policy.type``. The
flat input is rebuilt from MuJoCo state the way that evaluator does it (one zero-initialised ring buffer per
term, term-major concatenation) and compared with the env's own observation and with the exported graphs.
"""

import dataclasses
import os
import subprocess
import sys

import jax
import numpy as np
import onnxruntime as ort
import pytest
import torch
import yaml

from agile_jax.evaluation import policy_io
from agile_jax.export import export_policy
from agile_jax.export.io_descriptor import DescriptorError, read_io_descriptor
from agile_jax.networks.actor_critic import ActorCritic, make_inference_fn
from agile_jax.networks.recurrent import ActorCriticRecurrent

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = 8

# -- the schema, as AGILE's evaluator reads it ----------------------------------------------------
AGILE_TERMS = {"projected_gravity", "base_ang_vel", "base_lin_vel", "joint_pos_rel", "joint_pos", "joint_vel",
               "joint_vel_rel", "last_action", "navigation_command", "locomotion_command",
               "velocity_and_height_command", "generated_commands", "zero_padding"}
NUMBER = (int, float)
OVERLOADS = {"history_length": int, "scale": NUMBER + (type(None), list), "clip": (list, type(None)),
             "flatten_history_dim": bool}
TERM = {"name": str, "shape": list, "overloads": OVERLOADS}
ACTION = {"name": str, "joint_names": list, "scale": NUMBER + (list,), "offset": list, "clip": (list, type(None))}
ROBOT = {"joint_names": list, "default_joint_pos": list, "default_joint_stiffness": list,
         "default_joint_damping": list}
SCHEMA = {"policy": {"type": str}, "observations": {"policy": [TERM]}, "actions": [ACTION],
          "articulations": {"robot": ROBOT}, "scene": {"physics_dt": float, "decimation": int, "dt": float}}


def check_schema(value, schema, path: str = "") -> None:
    """Asserts that ``value`` has every key of ``schema`` with the given types, recursively (lists: each item)."""
    if isinstance(schema, dict):
        assert isinstance(value, dict), f"{path}: expected a mapping, got {type(value).__name__}"
        for key, sub in schema.items():
            assert key in value, f"{path}.{key} is missing"
            check_schema(value[key], sub, f"{path}.{key}")
    elif isinstance(schema, list):
        assert isinstance(value, list) and value, f"{path}: expected a non-empty list"
        for i, item in enumerate(value):
            check_schema(item, schema[0], f"{path}[{i}]")
    else:
        assert isinstance(value, schema), f"{path}: {value!r} is not {schema}"


def check_agile_rules(desc: dict, num_actions: int) -> None:
    """The value-level rules of AGILE's reader on top of the types."""
    robot = desc["articulations"]["robot"]
    for term in desc["observations"]["policy"]:
        assert term["name"] in AGILE_TERMS, term["name"]
        assert len(term["shape"]) == 1, f"{term['name']}: one frame, got shape {term['shape']}"
        assert not {"history_length", "scale", "clip", "offset"} & set(term), f"{term['name']}: pre-AGILE keys"
        for key in ("joint_pos_offsets", "joint_vel_offsets"):
            if key in term:
                assert len(term[key]) == len(term["joint_names"]) == term["shape"][0]
        assert all(j in robot["joint_names"] for j in term.get("joint_names", []))
    action = desc["actions"][0]
    assert len(action["joint_names"]) == len(action["offset"]) == len(action["clip"]) == num_actions
    assert all(len(c) == 2 and c[0] < c[1] for c in action["clip"]) and "clip_target" not in action
    assert desc["scene"]["dt"] == pytest.approx(desc["scene"]["physics_dt"] * desc["scene"]["decimation"])
    width = sum(t["shape"][0] * max(t["overloads"]["history_length"], 1) for t in desc["observations"]["policy"])
    assert desc["policy"]["inputs"][0]["shape"] == [1, width]


# -- AGILE's way of building the input, written out --------------------------------------------
def rotate_inverse(q: np.ndarray, v: np.ndarray) -> np.ndarray:
    """``v`` in the frame of unit quaternion ``q`` (w, x, y, z)."""
    w, u = q[0], q[1:]
    return v * (2.0 * w * w - 1.0) - np.cross(u, v) * w * 2.0 + u * np.dot(u, v) * 2.0


class AgileStyleInput:
    """One ring buffer of ``history_length`` frames per term, zeros until filled, read oldest first."""

    def __init__(self, desc: dict, model_joints: list[str]):
        self.terms = desc["observations"]["policy"]
        self.names = model_joints  # hinge joints in MJCF order: qpos[7:], qvel[6:]
        self.buffers = [np.zeros((max(t["overloads"]["history_length"], 1), t["shape"][0])) for t in self.terms]
        self.index = 0

    def raw(self, term: dict, qpos: np.ndarray, qvel: np.ndarray, command, last_action) -> np.ndarray:
        joints = [self.names.index(j) for j in term.get("joint_names", [])]
        values = {"base_ang_vel": lambda: qvel[3:6],  # the root gyro reads the free joint's local rate
                  "projected_gravity": lambda: rotate_inverse(qpos[3:7], np.array([0.0, 0.0, -1.0])),
                  "locomotion_command": lambda: np.asarray(command),
                  "joint_pos_rel": lambda: qpos[7:][joints] - np.asarray(term.get("joint_pos_offsets", 0.0)),
                  "joint_vel_rel": lambda: qvel[6:][joints] - np.asarray(term.get("joint_vel_offsets", 0.0)),
                  "last_action": lambda: np.asarray(last_action)}
        return values[term["name"]]()

    def push(self, qpos: np.ndarray, qvel: np.ndarray, command, last_action) -> np.ndarray:
        """The flat input after pushing this control step's frame of every term."""
        slot = self.index % len(self.buffers[0])
        for term, buf in zip(self.terms, self.buffers):
            x = self.raw(term, qpos, qvel, command, last_action)
            scale, clip = term["overloads"]["scale"], term["overloads"]["clip"]
            x = x * scale if scale is not None else x
            buf[slot] = np.clip(x, *clip) if clip is not None else x
        self.index += 1
        filled = self.index >= len(self.buffers[0])
        order = np.roll(np.arange(len(self.buffers[0])), -(self.index % len(self.buffers[0]))) if filled else None
        return np.concatenate([(buf[order] if filled else buf).reshape(-1) for buf in self.buffers])


# -- fixtures ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def t1_env():
    from envs.tasks.velocity import T1VelocityConfig, VelocityEnv

    return VelocityEnv(dataclasses.replace(T1VelocityConfig(), obs_noise=False))


@pytest.fixture(scope="module")
def exported_mlp(t1_env, tmp_path_factory):
    """A small random MLP exported with the T1 env's description."""
    env = t1_env
    net = ActorCritic(dict(env.observation_shapes), {"actor": ["policy"], "critic": ["critic"]}, env.action_size,
                      (32, 32), (32,), "elu")
    params = net.init(jax.random.key(1))
    out = str(tmp_path_factory.mktemp("mlp") / "exported")
    export_policy(net, params, {}, out, env=env)
    return out, net, params


@pytest.fixture(scope="module")
def rollout(t1_env):
    """States of STEPS env steps with random actions: ``[(qpos, qvel, command, last_action, env policy obs)]``."""
    env = t1_env
    step = jax.jit(env.step)
    state = env.reset(jax.random.key(7))
    rng = np.random.default_rng(0)
    rows = [_row(state)]
    for _ in range(STEPS):
        state = step(state, jax.numpy.asarray(rng.uniform(-0.3, 0.3, env.action_size), jax.numpy.float32))
        rows.append(_row(state))
    return rows


def model_joints(env) -> list[str]:
    """The non-free joints of the env's MuJoCo model, in model order (as AGILE's simulation lists them)."""
    import mujoco

    m = env.robot.model
    return [m.joint(j).name for j in range(m.njnt) if m.jnt_type[j] != mujoco.mjtJoint.mjJNT_FREE]


def _row(state):
    return (np.asarray(state.data.qpos, np.float64), np.asarray(state.data.qvel, np.float64),
            np.asarray(state.info["command"], np.float64), np.asarray(state.info["last_action"], np.float64),
            np.asarray(state.obs["policy"]))


# -- tests ------------------------------------------------------------------------------------
def test_t1_descriptor_follows_agile_schema(exported_mlp, t1_env):
    desc = read_io_descriptor(os.path.join(exported_mlp[0], "policy.yaml"))
    check_schema(desc, SCHEMA)
    check_agile_rules(desc, t1_env.action_size)
    terms = desc["observations"]["policy"]
    assert [t["name"] for t in terms] == ["base_ang_vel", "projected_gravity", "locomotion_command", "joint_pos_rel",
                                          "joint_vel_rel", "last_action"]
    assert [t["shape"] for t in terms] == [[3], [3], [3], [12], [12], [12]]
    assert [t["overloads"]["scale"] for t in terms] == [0.2, 1.0, 1.0, 1.0, 0.05, 1.0]
    assert {t["overloads"]["history_length"] for t in terms} == {5}
    assert desc["policy"]["type"] == "MLP" and desc["policy"]["inputs"][0]["layout"] == "term_major"
    knee = desc["actions"][0]["joint_names"].index("Left_Knee_Pitch")
    # The T1 clips the target to [-1, 1]; its knee offset is 0.4 and scale 1, so the raw action to [-1.4, 0.6].
    assert terms[3]["joint_pos_offsets"][knee] == pytest.approx(0.4)
    assert desc["actions"][0]["clip"][knee] == pytest.approx([-1.4, 0.6])


@pytest.mark.parametrize("robot", ["t1", "g1"])
def test_raw_action_clip_reproduces_the_target_clip(robot, t1_env):
    """AGILE's action path ``offset + scale * clip(a)`` equals training's ``clip(offset + scale * a)``."""
    from envs.tasks.velocity import G1VelocityConfig, VelocityEnv

    env = t1_env if robot == "t1" else VelocityEnv(G1VelocityConfig())
    act = env.io_description()["actions"][0]
    lo, hi = np.asarray(act["clip"]).T
    a = np.random.default_rng(2).normal(0.0, 30.0 if robot == "g1" else 1.5, (256, env.action_size))
    agile = np.asarray(act["offset"]) + act["scale"] * np.clip(a, lo, hi)
    training = np.clip(env.robot.default_pos[env.robot.action_idx] + env.cfg.action_scale * a, *env.cfg.action_clip)
    assert np.abs(agile - training).max() < 1e-5
    assert (np.abs(a) > np.abs(hi)).any()  # the clip was exercised


def test_agile_style_input_equals_env_observation(exported_mlp, rollout, t1_env):
    """Per-term ring buffers fed from MuJoCo state give the env's observation (term-major) once full."""
    from envs.mdp.observations import term_major

    desc = read_io_descriptor(os.path.join(exported_mlp[0], "policy.yaml"))
    builder, worst = AgileStyleInput(desc, model_joints(t1_env)), []
    for k, (qpos, qvel, command, last_action, env_obs) in enumerate(rollout):
        built = builder.push(qpos, qvel, command, last_action)
        if k >= 4:  # the five-frame buffers are full
            expected = np.asarray(term_major(env_obs, t1_env.policy_layout))
            worst.append(np.abs(built - expected).max())
    assert len(worst) == STEPS + 1 - 4 and max(worst) < 1e-6


def test_exported_graphs_read_the_agile_input(exported_mlp, rollout, t1_env):
    """ONNX (batch 1) and TorchScript as AGILE calls it (1-D obs) on the AGILE-built input = JAX on env obs."""
    out, net, params = exported_mlp
    desc = read_io_descriptor(os.path.join(out, "policy.yaml"))
    policy = make_inference_fn(net)(params, {}, deterministic=True)
    session = ort.InferenceSession(os.path.join(out, "policy.onnx"), providers=["CPUExecutionProvider"])
    module = torch.jit.load(os.path.join(out, "policy.pt"))
    builder = AgileStyleInput(desc, model_joints(t1_env))
    errors = []
    for k, (qpos, qvel, command, last_action, env_obs) in enumerate(rollout):
        x = builder.push(qpos, qvel, command, last_action).astype(np.float32)
        if k < 4:
            continue
        ref = np.asarray(policy({"policy": env_obs[None]}))[0]
        got_onnx = session.run(None, {"obs": x[None]})[0][0]
        with torch.no_grad():
            got_torch = module(torch.from_numpy(x)).numpy()
        errors.append(max(np.abs(got_onnx - ref).max(), np.abs(got_torch - ref).max()))
    assert max(errors) < 1e-5 and np.abs(ref).max() > 1e-2


def test_our_builder_matches_the_agile_style_input(exported_mlp, rollout, t1_env):
    """experiments/eval.py's builder (history back-filled) equals the AGILE-style one once full."""
    from agile_jax.evaluation import sim2mujoco

    desc = read_io_descriptor(os.path.join(exported_mlp[0], "policy.yaml"))
    io = policy_io.parse(desc)
    ours, agile = policy_io.ObservationBuilder(io, noise_scale=0.0), AgileStyleInput(desc, model_joints(t1_env))
    joints = sim2mujoco.map_joints(t1_env.robot.model, io.joint_names)
    for k, (qpos, qvel, command, last_action, _) in enumerate(rollout):
        values = policy_io.term_values(qpos, qvel, joints.qpos, joints.dof, command, last_action)
        a, b = ours(values), agile.push(qpos, qvel, command, last_action)
        if k >= 4:
            assert np.abs(a - b).max() < 1e-6


def test_recurrent_export_declares_agile_rnn_state(t1_env, tmp_path):
    """policy.type RNN + hidden_shape; policy.pt(obs, hidden) -> (actions, hidden) matches the ONNX h/c I/O."""
    env = t1_env
    net = ActorCriticRecurrent(dict(env.observation_shapes), {"actor": ["policy"], "critic": ["critic"]},
                               env.action_size, (16,), (16,), "elu", rnn_type="lstm", rnn_hidden_dim=8,
                               rnn_num_layers=2)
    export_policy(net, net.init(jax.random.key(3)), {}, str(tmp_path), env=env, num_random=12)
    desc = read_io_descriptor(str(tmp_path / "policy.yaml"))
    check_schema(desc, SCHEMA)
    assert desc["policy"]["type"] == "RNN" and desc["policy"]["hidden_shape"] == [4, 1, 8]
    assert desc["policy"]["hidden_layout"] == ["h", "c"]
    module = torch.jit.load(str(tmp_path / "policy.pt"))
    session = ort.InferenceSession(str(tmp_path / "policy.onnx"), providers=["CPUExecutionProvider"])
    hidden = torch.zeros(*desc["policy"]["hidden_shape"])  # what AGILE's RNN wrapper starts from
    h, c = np.zeros((2, 1, 8), np.float32), np.zeros((2, 1, 8), np.float32)
    obs = np.random.default_rng(4).normal(size=(6, 1, desc["policy"]["inputs"][0]["shape"][1])).astype(np.float32)
    worst = 0.0
    for x in obs:
        with torch.no_grad():
            actions, hidden = module(torch.from_numpy(x), hidden)
        ref, h, c = session.run(None, {"obs": x, "h_in": h, "c_in": c})
        worst = max(worst, np.abs(actions.numpy() - ref).max(), np.abs(hidden.numpy() - np.concatenate([h, c])).max())
    assert worst < 1e-5 and tuple(hidden.shape) == (4, 1, 8)


def _old_descriptor(path: str) -> str:
    """A copy of ``path`` rewritten in the pre-AGILE layout (history shapes, top-level scale / offset)."""
    desc = read_io_descriptor(path)
    desc["format_version"] = 1
    for term in desc["observations"]["policy"]:
        h = term["overloads"].pop("history_length")
        term.update(term.pop("overloads"), shape=[h, *term["shape"]], history_length=h)
    return yaml.safe_dump(desc)


def test_old_descriptor_is_refused_in_one_line(exported_mlp, tmp_path):
    out = tmp_path / "old"
    out.mkdir()
    (out / "policy.yaml").write_text(_old_descriptor(os.path.join(exported_mlp[0], "policy.yaml")))
    (out / "policy.onnx").write_bytes(open(os.path.join(exported_mlp[0], "policy.onnx"), "rb").read())
    with pytest.raises(DescriptorError, match="pre-AGILE descriptor layout"):
        policy_io.load_io(str(out / "policy.yaml"))
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "experiments", "eval.py"), str(out), "video=false"],
                          capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": ROOT})
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "re-export" in proc.stderr
