"""RSL-RL 5.x checkpoints written by rsl-rl-lib itself, read as networks, teachers and PPO starting points.

Each checkpoint comes from RSL-RL's own ``OnPolicyRunner`` (``MLPModel`` / ``RNNModel`` actor and critic, Gaussian
or heteroscedastic std) after one update on a small random env, saved with ``runner.save``. Actions (and values)
are compared with RSL-RL's models step by step over a sequence with episode resets, within 1e-5.
"""

from __future__ import annotations

import copy
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from agile_jax import config as config_lib
from agile_jax.networks.records import ActorCriticHidden
from agile_jax.networks.recurrent import reset_state
from agile_jax.training.runner import OnPolicyRunner
from tests.helpers import point_mass_config, point_mass_env

torch = pytest.importorskip("torch")
pytest.importorskip("rsl_rl")

from rsl_rl.env import VecEnv  # noqa: E402
from rsl_rl.runners import OnPolicyRunner as RslRlRunner  # noqa: E402
from tensordict import TensorDict  # noqa: E402

from agile_jax.export import rsl_rl as interop  # noqa: E402
from agile_jax.policies.load import load_policy  # noqa: E402
from agile_jax.training import init_from  # noqa: E402

TOL = 1e-5
DIMS = {"policy": 4, "critic": 5}  # the point mass's observation groups, 2 actions
GROUPS = {"actor": ["policy"], "critic": ["critic"]}
HETERO = "HeteroscedasticGaussianDistribution"


class FakeEnv(VecEnv):
    """Random observations and rewards with the point mass's layout; enough for RSL-RL to act, update and save."""

    def __init__(self, num_envs: int = 8, seed: int = 0, shapes: dict | None = None):
        self.shapes = shapes or {k: (d,) for k, d in DIMS.items()}
        self.num_envs, self.num_actions, self.max_episode_length = num_envs, 2, 10
        self.episode_length_buf = torch.zeros(num_envs, dtype=torch.long)
        self.device, self.cfg = "cpu", {}
        self.gen = torch.Generator().manual_seed(seed)

    def get_observations(self) -> TensorDict:
        obs = {k: 1.0 + 2.0 * torch.randn(self.num_envs, *s, generator=self.gen) for k, s in self.shapes.items()}
        return TensorDict(obs, batch_size=[self.num_envs])

    def step(self, actions):
        self.episode_length_buf += 1
        dones = self.episode_length_buf >= self.max_episode_length
        self.episode_length_buf[dones] = 0
        return self.get_observations(), torch.randn(self.num_envs, generator=self.gen), dones.long(), {
            "time_outs": dones.long()}


# name -> (model class, rnn_type, distribution class, std_type)
KINDS = {"mlp_hetero_log": ("MLPModel", None, HETERO, "log"), "lstm_gaussian": ("RNNModel", "lstm",
                                                                                 "GaussianDistribution", "scalar"),
         "gru_hetero_scalar": ("RNNModel", "gru", HETERO, "scalar")}


def rsl_rl_cfg(kind: str) -> dict:
    model_class, rnn_type, dist, std_type = KINDS[kind]
    model = {"class_name": model_class, "hidden_dims": [32, 32], "activation": "elu", "obs_normalization": True}
    if rnn_type:
        model.update(rnn_type=rnn_type, rnn_hidden_dim=16, rnn_num_layers=2 if rnn_type == "lstm" else 1)
    return {"obs_groups": dict(GROUPS), "num_steps_per_env": 8, "save_interval": 50,
            "algorithm": {"class_name": "PPO", "num_learning_epochs": 1, "num_mini_batches": 2},
            "actor": {**model, "distribution_cfg": {"class_name": dist, "init_std": 0.8, "std_type": std_type}},
            "critic": dict(model)}


def write_checkpoint(tmp_path, kind: str, agent_yaml: bool = False) -> tuple[RslRlRunner, str]:
    """RSL-RL trains one iteration and saves ``model_1.pt`` (with Isaac Lab's ``params/agent.yaml`` if asked)."""
    torch.manual_seed(0)
    runner = RslRlRunner(FakeEnv(), rsl_rl_cfg(kind), log_dir=None)
    runner.learn(1)  # moves weights (the std head too), normalisers and Adam moments off their initial values
    folder = tmp_path / kind
    os.makedirs(folder / "params", exist_ok=True)
    if agent_yaml:
        _, _, dist, std_type = KINDS[kind]
        (folder / "params" / "agent.yaml").write_text(
            f"actor:\n  activation: elu\n  distribution_cfg:\n    class_name: {dist}\n    std_type: {std_type}\n")
    path = str(folder / "model_1.pt")
    runner.current_learning_iteration = 1
    runner.save(path)
    return runner, path


def obs_sequence(steps: int = 12, n: int = 6, seed: int = 1) -> tuple[dict, np.ndarray]:
    """Observations ``[T, N, D]`` per group and dones ``[T, N]`` (resets in the middle of the sequence)."""
    rng = np.random.default_rng(seed)
    obs = {k: (1.0 + 2.0 * rng.standard_normal((steps, n, d))).astype(np.float32) for k, d in DIMS.items()}
    dones = np.zeros((steps, n), bool)
    dones[3, 0] = dones[5, 2] = dones[5, 3] = dones[8, 0] = True
    return obs, dones


def torch_sequence(runner: RslRlRunner, obs: dict, dones: np.ndarray) -> dict[str, np.ndarray]:
    """RSL-RL's deterministic actions, std and values over the sequence (states reset after dones)."""
    actor, critic = runner.alg.actor, runner.alg.critic
    runner.alg.eval_mode()
    actor.reset(), critic.reset()
    out = {"actions": [], "std": [], "values": []}
    with torch.no_grad():
        for t in range(len(dones)):
            td = TensorDict({k: torch.from_numpy(v[t]) for k, v in obs.items()}, batch_size=[dones.shape[1]])
            hidden = actor.get_hidden_state()
            out["actions"].append(actor(td).numpy())
            actor.reset(hidden_state=hidden)  # replay the step to read the distribution from the same state
            actor(td, stochastic_output=True)
            out["std"].append(actor.output_std.numpy())
            out["values"].append(critic(td)[..., 0].numpy())
            done = torch.from_numpy(dones[t].astype(np.int64))
            actor.reset(done), critic.reset(done)
    return {k: np.stack(v) for k, v in out.items()}


def jax_sequence(networks, params, normalizers, obs: dict, dones: np.ndarray) -> dict[str, np.ndarray]:
    """Our means, stds and values over the same sequence (``actor_dist_step`` / ``value_step``)."""
    hidden = networks.init_hidden(dones.shape[1])
    out = {"actions": [], "std": [], "values": []}
    for t in range(len(dones)):
        o = {"policy": obs["policy"][t], "critic": obs["critic"][t]}
        (mean, std), h_actor = networks.actor_dist_step(params, normalizers, o, hidden.actor)
        value, h_critic = networks.value_step(params, normalizers, o, hidden.critic)
        out["actions"].append(mean), out["std"].append(jnp.broadcast_to(std, mean.shape)), out["values"].append(value)
        hidden = reset_state(ActorCriticHidden(actor=h_actor, critic=h_critic), jnp.asarray(dones[t]))
    return {k: np.stack(v) for k, v in out.items()}


@pytest.mark.parametrize("kind", list(KINDS))
def test_checkpoint_networks_match_rsl_rl_and_round_trip(tmp_path, kind):
    runner, path = write_checkpoint(tmp_path, kind, agent_yaml=kind == "mlp_hetero_log")
    ckpt = interop.load_checkpoint(path)
    layout = ckpt.layout
    model_class, rnn_type, dist, std_type = KINDS[kind]
    assert (layout.rnn_type, layout.distribution_class, layout.noise_std_type) == (rnn_type, dist, std_type)
    assert layout.action_size == 2 and layout.actor_obs_normalization and ckpt.iteration == 1
    networks = layout.networks({"policy": (4,), "critic": (5,)}, GROUPS)
    obs, dones = obs_sequence()
    ref = torch_sequence(runner, obs, dones)
    ours = jax_sequence(networks, ckpt.params, ckpt.normalizers, obs, dones)
    for key in ("actions", "std", "values"):
        assert np.max(np.abs(ours[key] - ref[key])) < TOL, key
    if dist == HETERO:  # the std really depends on the state, so the comparison above is not of a constant
        assert np.ptp(ref["std"]) > 1e-3
    # agile_jax -> RSL-RL: a fresh RSL-RL runner loads our file and holds the very same tensors.
    interop.save_checkpoint(str(tmp_path / "ours.pt"), networks, ckpt.params, ckpt.normalizers, iteration=3)
    torch.manual_seed(1)
    other = RslRlRunner(FakeEnv(seed=1), rsl_rl_cfg(kind), log_dir=None)
    other.load(str(tmp_path / "ours.pt"))
    assert other.current_learning_iteration == 3
    for net in ("actor", "critic"):
        original = getattr(runner.alg, net).state_dict()
        for key, value in getattr(other.alg, net).state_dict().items():
            assert torch.equal(value, original[key]), (net, key)


@pytest.mark.parametrize("kind", ["mlp_hetero_log", "lstm_gaussian"])
def test_checkpoint_as_teacher(tmp_path, kind):
    runner, path = write_checkpoint(tmp_path, kind)
    teacher = load_policy(path)
    assert teacher.description["format"] == "rsl_rl_checkpoint" and teacher.obs_dim == 4 and teacher.action_dim == 2
    assert teacher.is_recurrent == (KINDS[kind][1] is not None)
    if KINDS[kind][2] == HETERO:
        assert teacher.action_std is None
    else:  # a Gaussian teacher carries its std (TPPO samples labels with it)
        np.testing.assert_allclose(teacher.action_std, runner.alg.actor.distribution.std_param.detach(), rtol=1e-6)
    obs, dones = obs_sequence()
    ref = torch_sequence(runner, obs, dones)["actions"]
    apply = jax.jit(teacher.bind(["policy"], {"policy": (4,), "critic": (5,)}))
    state, actions = teacher.init_state(dones.shape[1]), []
    for t in range(len(dones)):
        a, state = apply({"policy": obs["policy"][t], "critic": obs["critic"][t]}, state)
        actions.append(a)
        state = reset_state(state, jnp.asarray(dones[t]))
    assert np.max(np.abs(np.stack(actions) - ref)) < TOL


def test_distillation_with_a_checkpoint_teacher(tmp_path):
    from agile_jax.config import DistillationAlgorithmConfig, DistillationConfig, RunnerConfig, StudentTeacherConfig
    from agile_jax.training.distill_runner import DistillationRunner
    from envs.tasks.point_mass import PointMassConfig

    runner, path = write_checkpoint(tmp_path, "mlp_hetero_log")
    cfg = DistillationConfig(env=PointMassConfig(num_envs=8, episode_length=40),
                             policy=StudentTeacherConfig(teacher_path=path, student_hidden_dims=[16]),
                             algorithm=DistillationAlgorithmConfig(gradient_length=8),
                             runner=RunnerConfig(num_steps_per_env=8, progress_bar=False,
                                                 obs_groups={"student": ["policy"], "teacher": ["policy"]}))
    distill = DistillationRunner(point_mass_env(cfg), cfg)
    tr = distill.trainer.collect(distill.state).transitions
    runner.alg.eval_mode()
    with torch.no_grad():
        ref = runner.alg.actor(TensorDict({"policy": torch.from_numpy(np.array(tr.obs["policy"]))},
                                          batch_size=list(tr.dones.shape))).numpy()
    assert np.max(np.abs(np.asarray(tr.teacher_actions) - ref)) < TOL  # the rollout is labelled by RSL-RL's actor
    # The student approaches RSL-RL's actor on the rollout's observations.
    obs = {"policy": np.asarray(tr.obs["policy"]).reshape(-1, tr.obs["policy"].shape[-1])}
    labels = ref.reshape(obs["policy"].shape[0], -1)

    def gap() -> float:
        return float(np.mean(np.abs(np.asarray(distill.get_inference_policy()(obs)) - labels)))

    before = gap()
    distill.learn(5)
    # measured: mean |student - teacher| 0.271 -> 0.250 (the student's params are all that changed)
    assert int(distill.state.iteration) == 5 and gap() < 0.95 * before, (before, gap())


@pytest.mark.parametrize("kind", ["mlp_hetero_log", "gru_hetero_scalar"])
def test_ppo_starts_from_the_checkpoint(tmp_path, kind):
    runner, path = write_checkpoint(tmp_path, kind)
    _, rnn_type, dist, std_type = KINDS[kind]
    cfg = point_mass_config(num_envs=8, steps=8)
    cfg.policy.distribution_cfg = {"class_name": dist, "std_type": std_type}
    if rnn_type:
        cfg.policy.class_name, cfg.policy.rnn_type, cfg.policy.rnn_hidden_dim = "ActorCriticRecurrent", rnn_type, 16
    cfg.runner.init_from = path
    ours = OnPolicyRunner(point_mass_env(cfg), cfg)
    ckpt = interop.load_checkpoint(path, std_type=std_type)
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(ours.state.params),
                                                   jax.tree.leaves(jax.tree.map(jnp.asarray, ckpt.params))))
    # The first iteration acts with the checkpoint's policy: its rollout's means, stds and values are RSL-RL's.
    collected = ours.trainer.collect(ours.state)
    tr = collected.transitions
    obs = {k: np.array(v) for k, v in tr.obs.items()}
    ref = torch_sequence(runner, obs, np.asarray(tr.dones))
    assert np.max(np.abs(np.asarray(tr.action_mean) - ref["actions"])) < TOL
    assert np.max(np.abs(np.asarray(tr.action_std) - ref["std"])) < TOL
    assert np.max(np.abs(np.asarray(tr.values) - ref["values"])) < TOL
    before = jax.device_get(ours.state.params)
    ours.learn(1)
    assert ours.current_learning_iteration == 1
    moved = jax.tree.map(lambda a, b: float(np.max(np.abs(np.asarray(a) - b))), ours.state.params, before)
    assert max(jax.tree.leaves(moved)) > 1e-6


def test_ppo_starts_from_a_cnn_checkpoint(tmp_path):
    from agile_jax.config import AlgorithmConfig, PolicyConfig, RunnerConfig, TrainConfig
    from envs.core import VecEnv as JaxVecEnv
    from envs.tasks.point_mass_grid import PointMassGrid, PointMassGridConfig

    cnn_cfg = {"output_channels": [4, 8], "kernel_size": 3, "stride": [1, 2], "padding": "zeros"}
    groups = {"actor": ["policy", "grid"], "critic": ["critic", "grid"]}
    model = {"class_name": "CNNModel", "hidden_dims": [32, 32], "obs_normalization": True, "cnn_cfg": cnn_cfg}
    torch.manual_seed(0)
    rsl = RslRlRunner(FakeEnv(shapes={"policy": (2,), "grid": (1, 9, 9), "critic": (5,)}), {
        "obs_groups": groups, "num_steps_per_env": 8, "save_interval": 50,
        "algorithm": {"class_name": "PPO", "num_learning_epochs": 1, "num_mini_batches": 2},
        "actor": {**model, "distribution_cfg": {"class_name": "GaussianDistribution", "init_std": 0.8}},
        "critic": dict(model)}, log_dir=None)
    rsl.learn(1)
    path = str(tmp_path / "model_1.pt")
    rsl.save(path)
    cfg = TrainConfig(env=PointMassGridConfig(num_envs=8, episode_length=40),
                      policy=PolicyConfig(class_name="ActorCriticCNN", actor_hidden_dims=[32, 32],
                                          critic_hidden_dims=[32, 32], actor_obs_normalization=True,
                                          critic_obs_normalization=True, actor_cnn_cfg=cnn_cfg),
                      algorithm=AlgorithmConfig(num_learning_epochs=1, num_mini_batches=2),
                      runner=RunnerConfig(num_steps_per_env=8, progress_bar=False, obs_groups=groups, init_from=path))
    ours = OnPolicyRunner(JaxVecEnv(PointMassGrid(cfg.env), 8), cfg)
    tr = ours.trainer.collect(ours.state).transitions
    flat = {k: torch.from_numpy(np.array(v).reshape(-1, *v.shape[2:])) for k, v in tr.obs.items()}  # [T*N, ...]
    rsl.alg.eval_mode()
    with torch.no_grad():
        td = TensorDict(flat, batch_size=[tr.dones.size])
        mean, value = rsl.alg.actor(td).numpy(), rsl.alg.critic(td)[..., 0].numpy()
    assert np.max(np.abs(np.asarray(tr.action_mean).reshape(mean.shape) - mean)) < TOL
    assert np.max(np.abs(np.asarray(tr.values).reshape(-1) - value)) < TOL
    # As a teacher the CNN is built from the env's shapes and the cnn_cfg of Isaac Lab's params/agent.yaml.
    with pytest.raises(ValueError, match="is a CNNModel.*params/agent.yaml"):
        load_policy(path)
    (tmp_path / "params").mkdir()
    (tmp_path / "params" / "agent.yaml").write_text(
        "actor:\n  class_name: CNNModel\n  cnn_cfg:\n    output_channels: !!python/tuple [4, 8]\n    kernel_size: 3\n"
        "    stride: [1, 2]\n    padding: zeros\n")
    teacher = load_policy(path)
    shapes = PointMassGrid(cfg.env).observation_shapes
    labels, _ = jax.jit(teacher.bind(groups["actor"], shapes))(
        {k: np.array(v).reshape(-1, *shapes[k]) for k, v in tr.obs.items()}, teacher.init_state(tr.dones.size))
    assert np.max(np.abs(np.asarray(labels) - mean)) < TOL
    with pytest.raises(ValueError, match=r"reads 130 features, the groups \[.grid.\] give 128"):
        teacher.bind(["grid"], shapes)
    # TPPO labels the rollout with the same CNN teacher.
    tppo_cfg = copy.deepcopy(cfg)
    tppo_cfg.runner.init_from = ""
    tppo_cfg.algorithm.tppo_cfg.teacher_policy, tppo_cfg.algorithm.tppo_cfg.label_action_with_critic_obs = path, False
    student = OnPolicyRunner(JaxVecEnv(PointMassGrid(cfg.env), 8), tppo_cfg)
    labelled = student.trainer.collect(student.state).transitions
    flat = {k: torch.from_numpy(np.array(v).reshape(-1, *v.shape[2:])) for k, v in labelled.obs.items()}
    with torch.no_grad():
        expected = rsl.alg.actor(TensorDict(flat, batch_size=[labelled.dones.size])).numpy()
    labels = np.asarray(labelled.extras["act"]["tppo"]["labels"]).reshape(expected.shape)
    assert np.max(np.abs(labels - expected)) < TOL
    cfg.policy.actor_cnn_cfg = {**cnn_cfg, "kernel_size": 5}
    with pytest.raises(config_lib.ConfigError, match="CNNs do not fit the config's cnn_cfg.*needs"):
        OnPolicyRunner(JaxVecEnv(PointMassGrid(cfg.env), 8), cfg)


def test_load_run_finds_rsl_rl_checkpoints(tmp_path):
    run = tmp_path / "rsl_run"
    run.mkdir()
    for it in (0, 50, 100):
        (run / f"model_{it}.pt").write_bytes(b"x")
    assert init_from.rsl_rl_checkpoint_in(str(run), -1, str(tmp_path)) == str(run / "model_100.pt")
    assert init_from.rsl_rl_checkpoint_in("rsl_run", 50, str(tmp_path)) == str(run / "model_50.pt")
    assert init_from.rsl_rl_checkpoint_in(str(run / "model_0.pt"), -1, "") == str(run / "model_0.pt")
    with pytest.raises(config_lib.ConfigError, match=r"no model_7.pt; available iterations: \[0, 50, 100\]"):
        init_from.rsl_rl_checkpoint_in(str(run), 7, "")
    (tmp_path / "ours" / "checkpoints").mkdir(parents=True)  # one of our runs: resumed, not initialised from
    assert init_from.rsl_rl_checkpoint_in(str(tmp_path / "ours"), -1, "") is None


def test_bad_checkpoints_are_refused_in_one_line(tmp_path, capsys):
    _, path = write_checkpoint(tmp_path, "mlp_hetero_log")
    cfg = point_mass_config(num_envs=8, steps=8)
    cfg.policy.distribution_cfg = {"class_name": HETERO, "std_type": "log"}
    env = point_mass_env(cfg)
    garbage = tmp_path / "model_2.pt"
    garbage.write_bytes(b"not a checkpoint")
    torch.save({"weights": torch.zeros(3)}, tmp_path / "model_3.pt")
    cases = {str(tmp_path / "missing.pt"): "not found", str(garbage): "is not a readable RSL-RL checkpoint",
             str(tmp_path / "model_3.pt"): "holds no RSL-RL model state dicts"}
    for bad, message in cases.items():
        cfg.runner.init_from = bad
        with pytest.raises(config_lib.ConfigError, match=message):
            OnPolicyRunner(env, cfg)
    cfg.runner.init_from, cfg.policy.actor_hidden_dims = path, [64, 64]
    with pytest.raises(config_lib.ConfigError, match=r"set policy.actor_hidden_dims=\[32, 32\]"):
        OnPolicyRunner(env, cfg)
    cfg.policy.actor_hidden_dims, cfg.policy.distribution_cfg = [32, 32], None
    with pytest.raises(config_lib.ConfigError, match=f"set policy.distribution_cfg.class_name={HETERO}"):
        OnPolicyRunner(env, cfg)
    with pytest.raises(ValueError, match="holds no RSL-RL model state dicts"):
        load_policy(str(tmp_path / "model_3.pt"))
    from experiments import train

    code = train.main(["config=point_mass", f"runner.log_root={tmp_path / 'logs'}", "num_envs=4",
                       f"runner.init_from={garbage}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "is not a readable RSL-RL checkpoint" in err[0]
