"""RSL-RL 5.5.1's ``HeteroscedasticGaussianDistribution`` (state-dependent std, ``scalar`` and ``log``).

* log-prob, entropy and KL of the PPO forward pass against hand-computed numbers of a one-layer actor;
* the initial std head (zero weights, RSL-RL's bias) against ``rsl_rl.models.MLPModel``;
* one PPO update on one minibatch per epoch against ``rsl_rl.algorithms.PPO`` (same weights, same rollout);
* export of the deterministic mean: ours (ONNX + TorchScript) against RSL-RL's own TorchScript export;
* a PPO run whose rollouts act with the state-dependent std, and the config / CLI errors.
"""

from __future__ import annotations

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from agile_jax import config as config_lib
from agile_jax.algorithms import gae, optim, ppo
from agile_jax.config import AlgorithmConfig
from agile_jax.extensions.base import Batch, chain
from agile_jax.networks import distributions as D
from agile_jax.networks.actor_critic import ActorCritic
from agile_jax.networks.records import ActorCriticParams
from agile_jax.training.runner import OnPolicyRunner
from tests.helpers import point_mass_config, point_mass_env, policy_return

torch = pytest.importorskip("torch")
pytest.importorskip("rsl_rl")

from rsl_rl.algorithms import PPO  # noqa: E402
from rsl_rl.models import MLPModel  # noqa: E402
from rsl_rl.storage import RolloutStorage  # noqa: E402
from tensordict import TensorDict  # noqa: E402

from agile_jax.export.rsl_rl_models import read_model  # noqa: E402

HETERO = D.HETEROSCEDASTIC
LOG_2PI = math.log(2 * math.pi)


def _linear_actor(std_type: str) -> tuple[ActorCritic, dict]:
    """A one-layer actor ``out = x @ K + b`` on 2 inputs, 2 actions: mean = (x0, -x1) + (0.1, 0), std param =
    (0.5 x0, 0.25 x1) + (0.3, 0.2)."""
    net = ActorCritic(obs_shapes={"policy": (2,)}, obs_groups={"actor": ["policy"], "critic": ["policy"]},
                      action_size=2, actor_hidden_dims=(), critic_hidden_dims=(), distribution_class=HETERO,
                      noise_std_type=std_type)
    params = net.init(jax.random.key(0))
    kernel = jnp.array([[1.0, 0.0, 0.5, 0.0], [0.0, -1.0, 0.0, 0.25]])
    params.actor["mlp"]["params"]["Dense_0"] = {"kernel": kernel, "bias": jnp.array([0.1, 0.0, 0.3, 0.2])}
    return net, params


@pytest.mark.parametrize("std_type", ["scalar", "log"])
def test_log_prob_entropy_kl_by_hand(std_type):
    net, params = _linear_actor(std_type)
    obs = np.array([[1.0, 2.0], [-0.4, 0.8], [-2.0, 1.0]], np.float32)  # row 3: x0 = -2 drives the scalar std < 0
    actions = np.array([[0.5, -1.0], [0.0, 0.0], [1.0, 1.0]], np.float32)
    to_std = (lambda p: max(p, 1e-6)) if std_type == "scalar" else math.exp
    hand_mean = [[x0 + 0.1, -x1] for x0, x1 in obs]
    hand_std = [[to_std(0.5 * x0 + 0.3), to_std(0.25 * x1 + 0.2)] for x0, x1 in obs]
    batch = Batch(obs={"policy": jnp.asarray(obs)}, actions=jnp.asarray(actions), old_log_probs=None, old_values=None,
                  advantages=None, returns=None, old_mean=None, old_std=None, dones=None)
    out = ppo.forward(net, params, {}, batch, num_original=2)  # the entropy covers the first 2 rows only
    np.testing.assert_allclose(out.mean, hand_mean, rtol=1e-6)
    np.testing.assert_allclose(out.std, hand_std, rtol=1e-6)
    for row in range(3):
        z = [(a - m) / s for a, m, s in zip(actions[row], hand_mean[row], hand_std[row])]
        expected = sum(-0.5 * zi * zi - math.log(s) - 0.5 * LOG_2PI for zi, s in zip(z, hand_std[row]))
        assert float(out.log_prob[row]) == pytest.approx(expected, rel=1e-5), row
    assert out.entropy.shape == (2,)
    for row in range(2):
        expected = sum(0.5 + 0.5 * LOG_2PI + math.log(s) for s in hand_std[row])
        assert float(out.entropy[row]) == pytest.approx(expected, rel=1e-6)
    # KL(row 0 || row 1), per dimension log(s1/s0) + (s0^2 + (m0 - m1)^2) / (2 s1^2) - 1/2
    kl = float(D.kl(out.mean[0], out.std[0], out.mean[1], out.std[1]))
    expected = sum(math.log(s1 / s0) + (s0 * s0 + (m0 - m1) ** 2) / (2 * s1 * s1) - 0.5
                   for m0, s0, m1, s1 in zip(hand_mean[0], hand_std[0], hand_mean[1], hand_std[1]))
    assert kl == pytest.approx(expected, rel=1e-5)
    # The deterministic action is the mean half; action_std is the std half on the observation.
    np.testing.assert_allclose(net.actor_mean(params, {}, {"policy": obs}), hand_mean, rtol=1e-6)
    np.testing.assert_allclose(net.action_std(params, {}, {"policy": obs}), hand_std, rtol=1e-6)


@pytest.mark.parametrize("std_type", ["scalar", "log"])
def test_initial_std_head_matches_rsl_rl(std_type):
    obs = TensorDict({"policy": torch.randn(16, 5)}, batch_size=[16])
    torch.manual_seed(0)
    ref = MLPModel(obs, {"actor": ["policy"]}, "actor", 3, hidden_dims=[32, 16], distribution_cfg={
        "class_name": "HeteroscedasticGaussianDistribution", "init_std": 0.7, "std_type": std_type})
    ref(obs, stochastic_output=True)
    net = ActorCritic(obs_shapes={"policy": (5,)}, obs_groups={"actor": ["policy"], "critic": ["policy"]},
                      action_size=3, actor_hidden_dims=(32, 16), critic_hidden_dims=(8,), init_noise_std=0.7,
                      noise_std_type=std_type, distribution_class=HETERO)
    params = net.init(jax.random.key(1))
    ours = np.asarray(net.action_std(params, {}, {"policy": jnp.asarray(obs["policy"].numpy())}))
    # Both give init_std at every observation (log: exp(log(0.7 + 1e-7)), RSL-RL's rounding).
    np.testing.assert_allclose(ours, ref.output_std.detach().numpy(), rtol=1e-6)
    assert np.allclose(ours, 0.7, rtol=1e-6)
    head = params.actor["mlp"]["params"]["Dense_2"]
    assert head["kernel"].shape == (16, 6) and not np.any(head["kernel"][:, 3:]) and np.all(head["kernel"][:, :3] != 0)
    n_ref = sum(p.numel() for p in ref.parameters())
    assert sum(x.size for x in jax.tree.leaves(params.actor)) == n_ref  # no separate std parameter


# -- PPO update parity with rsl-rl-lib --------------------------------------------------------------

T, N, OBS_DIM, NUM_ACTIONS, HIDDEN = 8, 4, 6, 3, (16, 16)


def _rollout(seed: int) -> dict:
    rng = np.random.default_rng(seed)
    dones = np.zeros((T, N), np.int64)
    dones[2, 0] = dones[5, 1] = dones[7, 3] = 1
    return {"obs": rng.normal(size=(T + 1, N, OBS_DIM)).astype(np.float32),
            "rewards": rng.normal(size=(T, N)).astype(np.float32), "dones": dones}


def _rsl_rl_update(std_type: str, data: dict) -> dict:
    """RSL-RL collects the rollout with a heteroscedastic actor, then updates (3 epochs x 1 minibatch)."""
    td = lambda t: TensorDict({"policy": torch.from_numpy(data["obs"][t])}, batch_size=[N])  # noqa: E731
    groups = {"actor": ["policy"], "critic": ["policy"]}
    torch.manual_seed(3)
    actor = MLPModel(td(0), groups, "actor", NUM_ACTIONS, hidden_dims=list(HIDDEN), distribution_cfg={
        "class_name": "HeteroscedasticGaussianDistribution", "init_std": 0.8, "std_type": std_type})
    critic = MLPModel(td(0), groups, "critic", 1, hidden_dims=list(HIDDEN))
    with torch.no_grad():  # a std head that depends on the state (RSL-RL initialises its weights to zero)
        actor.mlp[-2].weight[NUM_ACTIONS:].normal_(0.0, 0.2, generator=torch.Generator().manual_seed(4))
    storage = RolloutStorage("rl", N, T, td(0), [NUM_ACTIONS], "cpu")
    alg = PPO(actor, critic, storage, num_learning_epochs=3, num_mini_batches=1, desired_kl=0.01,
              learning_rate=1e-3, device="cpu")
    with torch.inference_mode():
        for t in range(T):
            alg.act(td(t))
            alg.process_env_step(td(t + 1), torch.from_numpy(data["rewards"][t]), torch.from_numpy(data["dones"][t]),
                                 {})
    gen = torch.Generator().manual_seed(5)
    with torch.no_grad():  # the update starts from a slightly newer policy than the one that acted
        for p in itertools.chain(actor.parameters(), critic.parameters()):
            p.add_(0.05 * torch.randn(p.shape, generator=gen))
    start = {"actor": {k: v.clone() for k, v in actor.state_dict().items()},
             "critic": {k: v.clone() for k, v in critic.state_dict().items()}}
    with torch.inference_mode():
        alg.compute_returns(td(T))
    stored = {"obs": storage.observations["policy"].numpy().copy(), "actions": storage.actions.numpy().copy(),
              "values": storage.values[..., 0].numpy().copy(), "log_probs": storage.actions_log_prob[..., 0].numpy(),
              "mean": storage.distribution_params[0].numpy().copy(), "std": storage.distribution_params[1].numpy()}
    losses = alg.update()
    end = {"actor": actor.state_dict(), "critic": critic.state_dict()}
    return {"start": start, "stored": stored, "losses": losses, "lr": alg.learning_rate, "end": end}


def _our_update(std_type: str, data: dict, ref: dict) -> tuple[dict, dict]:
    cfg = AlgorithmConfig(learning_rate=1e-3, num_learning_epochs=3, num_mini_batches=1, desired_kl=0.01)
    net = ActorCritic(obs_shapes={"policy": (OBS_DIM,)}, obs_groups={"actor": ["policy"], "critic": ["policy"]},
                      action_size=NUM_ACTIONS, actor_hidden_dims=HIDDEN, critic_hidden_dims=HIDDEN,
                      noise_std_type=std_type, distribution_class=HETERO)
    params = ActorCriticParams(**{name: read_model(ref["start"][name], name, actor=name == "actor")[1]
                                  for name in ("actor", "critic")})
    params = jax.tree.map(jnp.asarray, params)
    st = ref["stored"]
    values = jnp.asarray(st["values"])
    last = net.value(params, {}, {"policy": jnp.asarray(data["obs"][T])})
    adv, ret = gae.compute_gae(jnp.asarray(data["rewards"]), values, jnp.asarray(data["dones"]), last, cfg.gamma,
                               cfg.lam)
    batch = Batch(obs={"policy": jnp.asarray(st["obs"])}, actions=jnp.asarray(st["actions"]),
                  old_log_probs=jnp.asarray(st["log_probs"]), old_values=values, advantages=adv, returns=ret,
                  old_mean=jnp.asarray(st["mean"]), old_std=jnp.asarray(st["std"]), dones=jnp.asarray(data["dones"]))
    tx = optim.make_optimizer(cfg.learning_rate, cfg.max_grad_norm, cfg.grad_clip_mode, cfg.optimizer)
    update = jax.jit(ppo.make_update_fn(cfg, net, tx))
    carry, metrics = update(ppo.SGDCarry(params, tx.init(params), 0), {}, chain(ppo.default_extensions(cfg)).init(
        None, None), batch, jax.random.key(0))
    return jax.device_get(carry.params), {k: float(v) for k, v in metrics.items()}


@pytest.mark.parametrize("std_type", ["scalar", "log"])
def test_ppo_update_matches_rsl_rl(std_type):
    data = _rollout(seed=7)
    ref = _rsl_rl_update(std_type, data)
    assert np.ptp(ref["stored"]["std"], axis=(0, 1)).min() > 1e-2, "the stored std must vary with the state"
    params, metrics = _our_update(std_type, data, ref)
    for name in ("actor", "critic"):
        _, expected, _ = read_model(ref["end"][name], name, actor=name == "actor")
        _, start, _ = read_model(ref["start"][name], name, actor=name == "actor")
        for (path, ours), theirs, before in zip(jax.tree_util.tree_flatten_with_path(params.by_network()[name])[0],
                                                jax.tree.leaves(expected), jax.tree.leaves(start)):
            change = np.max(np.abs(theirs - before))
            assert change > 1e-5, f"{name}{jax.tree_util.keystr(path)} did not move"
            # parameter changes agree to 1e-4 of their size (float32 Adam steps on ~0.5 parameters)
            assert np.max(np.abs((ours - before) - (theirs - before))) < 1e-4 * change + 1e-7, path
    assert metrics["learning_rate"] == pytest.approx(ref["lr"], rel=1e-6) and ref["lr"] != 1e-3
    for key in ("value", "surrogate", "entropy"):
        assert metrics[key] == pytest.approx(ref["losses"][key], rel=1e-5, abs=1e-6), key


# -- export of the mean ------------------------------------------------------------------------------


def test_export_of_the_mean_matches_rsl_rl_torchscript(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    from agile_jax.export import export_policy

    obs = TensorDict({"policy": 2.0 + torch.randn(64, 5)}, batch_size=[64])
    torch.manual_seed(2)
    ref = MLPModel(obs, {"actor": ["policy"]}, "actor", 3, hidden_dims=[16, 8], obs_normalization=True,
                   distribution_cfg={"class_name": "HeteroscedasticGaussianDistribution", "std_type": "log"})
    ref.train()
    ref.update_normalization(obs)
    with torch.no_grad():
        ref.mlp[-2].weight.normal_(0.0, 0.3, generator=torch.Generator().manual_seed(6))
    _, params, normalizer = read_model(ref.state_dict(), "actor", actor=True)
    net = ActorCritic(obs_shapes={"policy": (5,)}, obs_groups={"actor": ["policy"], "critic": ["policy"]},
                      action_size=3, actor_hidden_dims=(16, 8), critic_hidden_dims=(8,), noise_std_type="log",
                      distribution_class=HETERO, actor_obs_normalization=True)
    params = ActorCriticParams(actor=params, critic=net.init(jax.random.key(0)).critic)
    report = export_policy(net, params, {"actor": normalizer}, str(tmp_path), dynamic_batch=True)
    assert report["passed"] and report["action_dim"] == 3
    x = (2.0 + np.random.default_rng(0).standard_normal((32, 5))).astype(np.float32)
    jit = torch.jit.script(ref.as_jit())  # RSL-RL's own export (its _FirstSliceDeterministicOutput)
    with torch.no_grad():
        expected = jit(torch.from_numpy(x)).numpy()
    onnx_out = ort.InferenceSession(str(tmp_path / "policy.onnx"), providers=["CPUExecutionProvider"]).run(
        None, {"obs": x})[0]
    ours_jit = torch.jit.load(str(tmp_path / "policy.pt"))
    with torch.no_grad():
        ts_out = ours_jit(torch.from_numpy(x)).numpy()
    assert expected.shape == onnx_out.shape == ts_out.shape == (32, 3)
    assert np.max(np.abs(onnx_out - expected)) < 1e-5 and np.max(np.abs(ts_out - expected)) < 1e-5


# -- training and configuration ------------------------------------------------------------------------

HETERO_CFG = {"class_name": "HeteroscedasticGaussianDistribution", "init_std": 0.5, "std_type": "log"}


def test_ppo_acts_with_the_state_dependent_std():
    cfg = config_lib.apply_overrides(point_mass_config(num_envs=16, steps=8), [
        "policy.distribution_cfg.class_name=HeteroscedasticGaussianDistribution",
        "policy.distribution_cfg.init_std=0.5", "policy.distribution_cfg.std_type=log"])
    runner = OnPolicyRunner(point_mass_env(cfg), cfg)
    net = runner.networks
    assert net.state_dependent_std and "std" not in runner.state.params.actor
    first = runner.trainer.collect(runner.state)
    np.testing.assert_allclose(first.transitions.action_std, 0.5, rtol=1e-6)  # zero std-head weights at the start
    runner.learn(2)
    tr = runner.trainer.collect(runner.state).transitions
    state = runner.state
    expected = net.action_std(state.params, state.normalizers, tr.obs)
    np.testing.assert_allclose(tr.action_std, expected, rtol=1e-5)
    assert float(jnp.max(tr.action_std) - jnp.min(tr.action_std)) > 1e-4, "after updates the std depends on the state"
    # the sampled actions are mean + std * noise with that per-row std: their log-probs say so
    np.testing.assert_allclose(tr.log_probs, D.log_prob(tr.action_mean, tr.action_std, tr.actions), rtol=1e-5)


def test_distribution_cfg_errors_are_one_line(tmp_path, capsys):
    cfg = point_mass_config()
    env = point_mass_env(cfg)
    cfg.policy.distribution_cfg = {"class_name": "BetaDistribution"}
    with pytest.raises(config_lib.ConfigError, match="policy.distribution_cfg.class_name 'BetaDistribution'"):
        OnPolicyRunner(env, cfg)
    cfg.policy.distribution_cfg = {"class_name": "HeteroscedasticGaussianDistribution", "std_typ": "log"}
    with pytest.raises(config_lib.ConfigError, match=r"keys \['std_typ'\].*valid: \['init_std', 'std_range', "):
        OnPolicyRunner(env, cfg)
    from experiments import train

    code = train.main(["config=point_mass", f"runner.log_root={tmp_path}", "num_envs=4",
                       "policy.distribution_cfg.class_name=rsl_rl.modules.distribution.Nope"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "class_name 'Nope' is not supported" in err[0]


@pytest.mark.slow
def test_heteroscedastic_point_mass_learns():
    cfg = point_mass_config(num_envs=64, steps=16)
    cfg.env.episode_length = 100
    cfg.policy.distribution_cfg = dict(HETERO_CFG, init_std=1.0)
    runner = OnPolicyRunner(point_mass_env(cfg), cfg)
    before = policy_return(runner)
    runner.learn(42)
    assert before < 40.0 and runner.episodes.mean_return > 60.0 and policy_return(runner) > 60.0, before
