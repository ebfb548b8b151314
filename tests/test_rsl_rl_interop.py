"""RSL-RL 5.x interop: checkpoints both ways, and RSL-RL's own ONNX/TorchScript exports read from JAX."""

from __future__ import annotations

import os

import jax
import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("rsl_rl")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")  # torch.onnx.export (RSL-RL's exporter) needs it

from rsl_rl.env import VecEnv  # noqa: E402
from rsl_rl.runners import OnPolicyRunner  # noqa: E402
from tensordict import TensorDict  # noqa: E402

from agile_jax.algorithms import optim  # noqa: E402
from agile_jax.export import export_policy, onnx_import  # noqa: E402
from agile_jax.export import rsl_rl as interop  # noqa: E402
from agile_jax.networks.actor_critic import make_inference_fn  # noqa: E402

TOL = 1e-5
OBS_DIMS = {"policy": 6, "privileged": 2}
NUM_ACTIONS = 3


class FakeEnv(VecEnv):
    """Random observations and rewards; enough for RSL-RL's runner to act, update and save."""

    def __init__(self, num_envs: int = 8, seed: int = 0):
        self.num_envs, self.num_actions, self.max_episode_length = num_envs, NUM_ACTIONS, 10
        self.episode_length_buf = torch.zeros(num_envs, dtype=torch.long)
        self.device, self.cfg = "cpu", {}
        self.gen = torch.Generator().manual_seed(seed)

    def get_observations(self) -> TensorDict:
        obs = {k: 2.0 + 3.0 * torch.randn(self.num_envs, d, generator=self.gen) for k, d in OBS_DIMS.items()}
        return TensorDict(obs, batch_size=[self.num_envs])

    def step(self, actions):
        self.episode_length_buf += 1
        dones = self.episode_length_buf >= self.max_episode_length
        self.episode_length_buf[dones] = 0
        rewards = torch.randn(self.num_envs, generator=self.gen)
        return self.get_observations(), rewards, dones.long(), {"time_outs": dones.long()}


def train_cfg(activation: str = "elu", std_type: str = "scalar") -> dict:
    model = {"class_name": "MLPModel", "hidden_dims": [32, 16], "activation": activation, "obs_normalization": True}
    return {
        "obs_groups": {"actor": ["policy"], "critic": ["policy", "privileged"]},
        "num_steps_per_env": 8, "save_interval": 50,
        "algorithm": {"class_name": "PPO", "num_learning_epochs": 1, "num_mini_batches": 2, "learning_rate": 1e-3},
        "actor": {**model, "distribution_cfg": {"class_name": "GaussianDistribution", "init_std": 0.8,
                                                "std_type": std_type}},
        "critic": dict(model),
    }


def make_runner(activation: str = "elu", std_type: str = "scalar", seed: int = 0, learn: int = 1) -> OnPolicyRunner:
    torch.manual_seed(seed)
    runner = OnPolicyRunner(FakeEnv(seed=seed), train_cfg(activation, std_type), log_dir=None)
    if learn:
        runner.learn(learn)  # moves weights, normalisers and Adam moments away from their initial values
    return runner


def torch_outputs(runner: OnPolicyRunner, obs: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    td = TensorDict({k: torch.from_numpy(v) for k, v in obs.items()}, batch_size=[len(obs["policy"])])
    runner.alg.eval_mode()
    with torch.no_grad():
        return runner.alg.actor(td).numpy(), runner.alg.critic(td)[..., 0].numpy()


def random_obs(n: int = 32, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {k: (2.0 + 3.0 * rng.standard_normal((n, d))).astype(np.float32) for k, d in OBS_DIMS.items()}


def jax_outputs(networks, params, normalizers, obs) -> tuple[np.ndarray, np.ndarray]:
    jobs = {"policy": obs["policy"], "critic": np.concatenate([obs["policy"], obs["privileged"]], axis=-1)}
    actions = make_inference_fn(networks)(params, normalizers, deterministic=True)(jobs)
    return np.asarray(actions), np.asarray(networks.value(params, normalizers, jobs))


@pytest.mark.parametrize("std_type", ["scalar", "log"])
def test_checkpoint_round_trip(tmp_path, std_type):
    runner = make_runner(std_type=std_type)
    runner.save(str(tmp_path / "model_0.pt"))
    # RSL-RL -> agile_jax: same actions and values as torch.
    ckpt = interop.load_checkpoint(str(tmp_path / "model_0.pt"))
    layout = ckpt.layout
    assert (layout.actor_obs_dim, layout.critic_obs_dim, layout.action_size) == (6, 8, NUM_ACTIONS)
    assert layout.actor_hidden_dims == (32, 16) and layout.noise_std_type == std_type
    assert float(ckpt.normalizers["actor"].count) > 0
    networks = layout.networks()
    obs = random_obs()
    ref_actions, ref_values = torch_outputs(runner, obs)
    actions, values = jax_outputs(networks, ckpt.params, ckpt.normalizers, obs)
    assert np.max(np.abs(actions - ref_actions)) < TOL
    assert np.max(np.abs(values - ref_values)) < TOL
    dist = runner.alg.actor.distribution
    torch_std = dist.std_param if std_type == "scalar" else torch.exp(dist.log_std_param)
    np.testing.assert_allclose(networks.action_std(ckpt.params), torch_std.detach().numpy(), rtol=1e-6)
    # agile_jax -> RSL-RL: a fresh runner loads the written file and reproduces the original exactly.
    interop.save_checkpoint(str(tmp_path / "model_1.pt"), networks, ckpt.params, ckpt.normalizers, iteration=1)
    other = make_runner(std_type=std_type, seed=1, learn=0)
    other.load(str(tmp_path / "model_1.pt"))
    assert other.current_learning_iteration == 1
    for net in ("actor", "critic"):
        original = getattr(runner.alg, net).state_dict()
        for key, value in getattr(other.alg, net).state_dict().items():
            assert torch.equal(value, original[key]), (net, key)
    np.testing.assert_array_equal(torch_outputs(other, obs)[0], ref_actions)


def test_adam_moments_are_written_for_rsl_rl(tmp_path):
    runner = make_runner(learn=0)
    ckpt = interop.load_checkpoint(runner.alg.save() | {"iter": 0, "infos": None})
    networks = ckpt.layout.networks()
    tx = optim.make_optimizer(3e-4, 1.0)
    opt_state = tx.init(ckpt.params)
    rng = np.random.default_rng(0)
    grads = jax.tree.map(lambda x: rng.normal(size=x.shape).astype(np.float32), ckpt.params)
    _, opt_state = tx.update(grads, opt_state, ckpt.params)
    interop.save_checkpoint(str(tmp_path / "model_5.pt"), networks, ckpt.params, ckpt.normalizers, iteration=5,
                            opt_state=opt_state)
    runner.load(str(tmp_path / "model_5.pt"))
    assert runner.alg.learning_rate == pytest.approx(3e-4)
    adam = interop._adam_state(opt_state)
    weight = runner.alg.actor.mlp[0].weight
    state = runner.alg.optimizer.state[weight]
    assert float(state["step"]) == 1.0
    mu = np.asarray(adam.mu.actor["mlp"]["params"]["Dense_0"]["kernel"]).T
    np.testing.assert_array_equal(state["exp_avg"].numpy(), mu)
    runner.learn(1)  # RSL-RL continues training from the written optimizer state


def test_activation_from_isaac_lab_params_and_name_mapping(tmp_path):
    runner = make_runner(activation="crelu", learn=0)  # RSL-RL's crelu is torch.nn.CELU
    os.makedirs(tmp_path / "params")
    (tmp_path / "params" / "agent.yaml").write_text(
        "actor:\n  class_name: MLPModel\n  activation: crelu\n  hidden_dims: !!python/tuple [32, 16]\n")
    runner.save(str(tmp_path / "model_0.pt"))
    ckpt = interop.load_checkpoint(str(tmp_path / "model_0.pt"))
    assert ckpt.layout.activation == "crelu"
    obs = random_obs()
    actions, _ = jax_outputs(ckpt.layout.networks(), ckpt.params, ckpt.normalizers, obs)
    assert np.max(np.abs(actions - torch_outputs(runner, obs)[0])) < TOL
    # gelu is the exact erf form on both sides
    gelu_runner = make_runner(activation="gelu", learn=0)
    gelu_runner.save(str(tmp_path / "model_1.pt"))
    gelu = interop.load_checkpoint(str(tmp_path / "model_1.pt"), activation="gelu")
    actions, _ = jax_outputs(gelu.layout.networks(), gelu.params, gelu.normalizers, obs)
    assert np.max(np.abs(actions - torch_outputs(gelu_runner, obs)[0])) < TOL
    with pytest.raises(ValueError, match="unknown activation 'swishy'"):
        interop.load_checkpoint(str(tmp_path / "model_1.pt"), activation="swishy")


def test_rsl_rl_exports_load_in_jax_and_match_ours(tmp_path):
    runner = make_runner()
    runner.export_policy_to_onnx(str(tmp_path), "policy.onnx")
    runner.export_policy_to_jit(str(tmp_path), "policy.pt")
    assert os.path.exists(tmp_path / "policy.onnx.data")  # torch 2.13 stores the weights externally
    policy = onnx_import.load_onnx_policy(str(tmp_path / "policy.onnx"))
    assert policy.opset == 18 and policy.input_shapes == [[1, 6]]
    session = ort.InferenceSession(str(tmp_path / "policy.onnx"), providers=["CPUExecutionProvider"])
    jit = torch.jit.load(str(tmp_path / "policy.pt"))
    run = jax.jit(policy)
    for row in random_obs(8, seed=3)["policy"]:
        x = row[None]
        expected = session.run(None, {"obs": x})[0]
        assert np.max(np.abs(np.asarray(run(x)) - expected)) < TOL
        with torch.no_grad():
            assert np.max(np.abs(jit(torch.from_numpy(x)).numpy() - expected)) < TOL
    # Our export of the imported checkpoint reproduces RSL-RL's own TorchScript export.
    ckpt = interop.load_checkpoint(runner.alg.save() | {"iter": 1, "infos": None})
    out = tmp_path / "ours"
    export_policy(ckpt.layout.networks(), ckpt.params, ckpt.normalizers, str(out), dynamic_batch=True)
    obs = random_obs(16, seed=4)["policy"]
    ours = ort.InferenceSession(str(out / "policy.onnx"), providers=["CPUExecutionProvider"]).run(None, {"obs": obs})
    with torch.no_grad():
        assert np.max(np.abs(ours[0] - jit(torch.from_numpy(obs)).numpy())) < TOL
