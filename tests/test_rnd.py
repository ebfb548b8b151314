"""RND: intrinsic rewards and predictor updates against rsl-rl-lib 5.5.1, and more exploration than plain PPO."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from agile_jax.extensions import rnd
from agile_jax.extensions.base import Rollout, Spec
from agile_jax.networks import normalization
from agile_jax.training.runner import OnPolicyRunner
from agile_jax.types import Transition
from envs.tasks.point_mass import PointMass
from tests.helpers import point_mass_config, point_mass_env

torch = pytest.importorskip("torch")
tensordict = pytest.importorskip("tensordict")
rsl_rnd = pytest.importorskip("rsl_rl.extensions")

D, N, T = 3, 6, 5
SCHEDULE = {"mode": "linear", "initial_step": 2, "final_step": 4, "final_value": 2.0}


def _torch_rnd():
    torch.manual_seed(0)
    return rsl_rnd.RandomNetworkDistillation(
        num_states=D, obs_groups={"rnd_state": ["policy"]}, num_outputs=4, predictor_hidden_dims=[8, -1],
        target_hidden_dims=[16], state_normalization=True, reward_normalization=True, weight=0.5,
        weight_schedule=SCHEDULE, learning_rate=1e-2)


def _mlp_params(sd: dict, prefix: str) -> dict:
    """RSL-RL ``MLP`` state dict (Linear at even indices) -> our flax params."""
    idx = sorted({int(k.split(".")[1]) for k in sd if k.startswith(prefix + ".")})
    return {"params": {f"Dense_{i}": {"kernel": jnp.array(sd[f"{prefix}.{j}.weight"].numpy().T.copy()),
                                      "bias": jnp.array(sd[f"{prefix}.{j}.bias"].numpy().copy())}
                       for i, j in enumerate(idx)}}


def _ours(ref) -> tuple[rnd.RND, rnd.RNDState]:
    net = rnd.RND(["policy"], 4, [8, -1], [16], state_normalization=True, reward_normalization=True, weight=0.5,
                  weight_schedule=SCHEDULE, learning_rate=1e-2)
    state = net.init(jax.random.key(0), Spec(obs_shapes={"policy": (D,)}, action_size=1, num_envs=N))
    sd = ref.state_dict()
    # Copies: jnp.asarray of a torch-backed array may share its memory, which torch then updates in place.
    norm = normalization.NormalizerState(mean=jnp.array(sd["state_normalizer._mean"].numpy()[0].copy()),
                                         var=jnp.array(sd["state_normalizer._var"].numpy()[0].copy()),
                                         count=jnp.float32(sd["state_normalizer.count"].item()))
    predictor = _mlp_params(sd, "predictor")
    return net, state.replace(predictor=predictor, target=_mlp_params(sd, "target"), state_norm=norm,
                              opt_state=net.tx.init(predictor))


def _obs(seed: int, *shape) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(*shape, D)).astype(np.float32) * 2.0 + 1.0


def _td(x: np.ndarray):
    return tensordict.TensorDict({"policy": torch.as_tensor(x)}, batch_size=[x.shape[0]])


def test_intrinsic_rewards_match_rsl_rl():
    ref = _torch_rnd()
    ref.train()
    ref.update_normalization(_td(_obs(1, 40)))  # non-trivial state statistics
    net, state = _ours(ref)
    obs = _obs(2, T + 1, N)  # obs[t + 1] is the post-step observation of step t
    expected = np.stack([ref.get_intrinsic_reward(_td(obs[t + 1])).detach().numpy() for t in range(T)])
    weights = [ref.weight_scheduler(step=k, **SCHEDULE) for k in range(1, T + 1)]
    ext = rnd.extension(net, 1, 1)
    tr = Transition(obs={"policy": jnp.asarray(obs[:T])}, actions=None, rewards=None, dones=None, time_outs=None,
                    values=None, log_probs=None, action_mean=None, action_std=None, hidden=(), extras={})
    extrinsic = jnp.ones((T, N))
    new, shaped, metrics = ext.shape(state, Rollout(tr, extrinsic, {"policy": jnp.asarray(obs[T])}))
    np.testing.assert_allclose(np.asarray(shaped.rewards) - 1.0, expected, rtol=2e-5, atol=1e-6)
    assert float(metrics["Rnd/weight"]) == pytest.approx(weights[-1]) and weights[0] == 0.5 and weights[-1] == 2.0
    assert int(new.step) == T
    np.testing.assert_allclose(float(new.reward_norm.var[0]), ref.reward_normalizer.emp_norm._var.item(), rtol=1e-5)


def test_predictor_update_matches_rsl_rl():
    ref = _torch_rnd()
    ref.train()
    ref.update_normalization(_td(_obs(3, 40)))
    net, state = _ours(ref)
    minibatches = _obs(4, 3, 8)  # three minibatches of 8 stored observations
    ref_losses = []
    for mb in minibatches:
        loss = ref.compute_loss(_td(mb))
        ref.optimizer.zero_grad()
        loss.backward()
        ref.optimizer.step()
        ref_losses.append(loss.item())
    ours = []
    for mb in minibatches:
        state, loss = net.predictor_step(state, {"policy": jnp.asarray(mb)})
        ours.append(float(loss))
    np.testing.assert_allclose(ours, ref_losses, rtol=1e-5)
    assert ref_losses[-1] < ref_losses[0]
    expected = _mlp_params(ref.state_dict(), "predictor")
    for a, b in zip(jax.tree.leaves(state.predictor), jax.tree.leaves(expected)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
    # The state normaliser after the update sees every stored observation (RSL-RL's update_normalization).
    stored = _obs(5, 4, N)
    ref.update_normalization(_td(stored.reshape(-1, D)))
    ours_norm = normalization.update(state.state_norm, jnp.asarray(stored), rnd.UNTIL)
    np.testing.assert_allclose(np.asarray(ours_norm.var), ref.state_normalizer._var.numpy()[0], rtol=1e-5)


def test_weight_schedules():
    assert [float(rnd.weight_at(k, 1.0, {"mode": "step", "final_step": 3, "final_value": 0.0})) for k in (2, 3)] \
        == [1.0, 0.0]
    lin = {"mode": "linear", "initial_step": 10, "final_step": 20, "final_value": 3.0}
    assert [float(rnd.weight_at(k, 1.0, lin)) for k in (5, 10, 15, 20, 25)] == [1.0, 1.0, 2.0, 3.0, 3.0]
    assert float(rnd.weight_at(7, 0.25, None)) == 0.25


# -- exploration on a sparse-reward task ------------------------------------------------------------------


class SparsePointMass(PointMass):
    """The point mass started at the origin, with a reward out of reach of undirected motion (+1 beyond radius 6)."""

    def reset(self, key):
        state = super().reset(key)
        pos = state.data["pos"] * 0.05
        return state.replace(data={"pos": pos, "vel": state.data["vel"]}, obs=self._obs(pos, state.data["vel"]))

    def step(self, state, action):
        out = super().step(state, action)
        reward = (jnp.linalg.norm(out.data["pos"]) > 6.0).astype(jnp.float32)
        return out.replace(reward=reward, reward_terms={"distance": reward, "effort": jnp.zeros(())})


def _coverage(use_rnd: bool, iterations: int = 40) -> int:
    """Distinct 0.25 x 0.25 cells the positions visit in the rollouts of the last 10 iterations."""
    cfg = point_mass_config(num_envs=64, steps=32)
    cfg.env.bound, cfg.env.episode_length, cfg.env.action_scale = 8.0, 200, 0.5
    cfg.policy.init_noise_std, cfg.algorithm.entropy_coef = 0.5, 0.0
    cfg.runner.obs_groups = {"actor": ["policy"], "critic": ["critic"], "rnd_state": ["policy"]}
    rc = cfg.algorithm.rnd_cfg
    rc.enabled, rc.weight, rc.num_outputs = use_rnd, 20.0, 8
    rc.predictor_hidden_dims, rc.target_hidden_dims = [32], [32]
    rc.state_normalization = rc.reward_normalization = True
    runner = OnPolicyRunner(point_mass_env(cfg, SparsePointMass(cfg.env)), cfg)
    runner.learn(iterations - 10)
    cells = set()
    for _ in range(10):
        collected = runner.trainer.collect(runner.state)
        pos = np.asarray(collected.transitions.obs["policy"][..., :2]).reshape(-1, 2)
        cells |= {tuple(c) for c in np.floor(pos / 0.25).astype(int)}
        runner.learn(1)
    return len(cells)


def test_rnd_explores_more_than_plain_ppo():
    plain, curious = _coverage(False), _coverage(True)
    assert curious > 1.5 * plain, (curious, plain)


def test_discounted_sum_is_kept_when_the_step_counter_is_zero():
    """RSL-RL starts the discounted intrinsic sum only when there is none (``avg is None``): a state whose step
    counter is 0 (a restarted schedule) but which holds a sum continues it."""
    ref = _torch_rnd()
    ref.train()
    ref.update_normalization(_td(_obs(1, 40)))
    net, state = _ours(ref)
    obs = _obs(3, 3, N)
    for t in range(2):
        ref.get_intrinsic_reward(_td(obs[t]))
        state, _, _ = net.intrinsic_reward(state, {"policy": jnp.asarray(obs[t])})
    state = state.replace(step=jnp.zeros((), jnp.int32))
    assert float(jnp.abs(state.discounted).max()) > 0 and float(state.reward_norm.count) > 0
    expected = ref.get_intrinsic_reward(_td(obs[2])) / ref.weight_scheduler(step=3, **SCHEDULE)
    state, weighted, weight = net.intrinsic_reward(state, {"policy": jnp.asarray(obs[2])})
    np.testing.assert_allclose(np.asarray(state.discounted), ref.reward_normalizer.disc_avg.avg.numpy(), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(weighted / weight), expected.detach().numpy(), rtol=2e-5, atol=1e-6)
