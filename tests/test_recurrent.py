"""Recurrent networks and recurrent PPO: torch parity of the cells, trajectory minibatches, RSL-RL parity.

* LSTM / GRU (2 layers) against ``torch.nn.LSTM`` / ``GRU`` with copied weights, step by step with resets.
* :meth:`RNN.sequence` against a hand-built split-and-pad computation (zero-padded trajectories started
  from their stored states, run through torch, unpadded) on a rollout with dones.
* One recurrent PPO update against RSL-RL 5.5.1 (``RNNModel`` actor and critic, its own rollout storage
  and ``recurrent_mini_batch_generator`` with 2 minibatches): parameters, learning rate and losses.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("rsl_rl")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from rsl_rl.algorithms import PPO  # noqa: E402
from rsl_rl.models import RNNModel  # noqa: E402
from rsl_rl.storage import RolloutStorage  # noqa: E402
from tensordict import TensorDict  # noqa: E402

from agile_jax.algorithms import optim, ppo  # noqa: E402
from agile_jax.algorithms.recurrent import trajectory_minibatches  # noqa: E402
from agile_jax.config import AlgorithmConfig  # noqa: E402
from agile_jax.extensions.base import Batch, chain  # noqa: E402
from agile_jax.networks.records import ActorCriticHidden, ActorCriticParams  # noqa: E402
from agile_jax.networks.recurrent import (  # noqa: E402
    RNN,
    ActorCriticRecurrent,
    reset_state,
    rnn_from_torch,
    rnn_to_torch,
)

T, N, A, H, LAYERS = 8, 4, 3, 8, 2
OBS_DIMS = {"policy": 6, "critic": 7}
OBS_GROUPS = {"actor": ["policy"], "critic": ["critic"]}
MLP_HIDDEN = (16,)


def _torch_rnn(rnn: RNN, params):
    module = (torch.nn.LSTM if rnn.rnn_type == "lstm" else torch.nn.GRU)(rnn.input_dim, rnn.hidden_dim,
                                                                         rnn.num_layers)
    module.load_state_dict({k: torch.tensor(v) for k, v in rnn_to_torch(params).items()})
    return module


def _to_torch_state(state):
    """Our ``[B, L, H]`` parts -> torch's ``[L, B, H]`` (a tensor for a GRU, a pair for an LSTM)."""
    parts = tuple(torch.from_numpy(np.asarray(s).transpose(1, 0, 2).copy()) for s in state)
    return parts if len(parts) == 2 else parts[0]


@pytest.mark.parametrize("rnn_type", ["lstm", "gru"])
def test_cells_match_torch_step_by_step(rnn_type):
    rnn = RNN(rnn_type, 5, H, LAYERS)
    params = rnn.init(jax.random.key(0))
    module = _torch_rnn(rnn, params)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(12, 3, 5)).astype(np.float32)
    resets = rng.random((12, 3)) < 0.2
    state, torch_state, worst = rnn.zero_state((3,)), None, 0.0
    step = jax.jit(rnn.step)
    for t in range(12):
        y, state = step(params, jnp.asarray(x[t]), state)
        with torch.no_grad():
            y_ref, torch_state = module(torch.from_numpy(x[t][None]), torch_state)
        worst = max(worst, float(np.max(np.abs(np.asarray(y) - y_ref[0].numpy()))))
        # Reset finished rows on both sides.
        state = reset_state(state, jnp.asarray(resets[t]))
        torch_state = _to_torch_state(state)
    assert worst < 1e-6, worst
    # The state-dict round trip is exact.
    back = rnn_from_torch(module.state_dict())
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(back)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def split_and_pad(x: np.ndarray, dones: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[tuple[int, int]]]:
    """Hand-built trajectories of ``x [T, B, D]``: padded ``[T, K, D]``, masks ``[T, K]``, (env, start) per trajectory.

    Env-major order, split after every done and at the end of the rollout (RSL-RL's layout).
    """
    trajs = []
    for env in range(x.shape[1]):
        start = 0
        for t in range(x.shape[0]):
            if dones[t, env] or t == x.shape[0] - 1:
                trajs.append((env, start, t + 1))
                start = t + 1
    padded = np.zeros((x.shape[0], len(trajs), x.shape[2]), x.dtype)
    masks = np.zeros((x.shape[0], len(trajs)), bool)
    for k, (env, start, stop) in enumerate(trajs):
        padded[: stop - start, k] = x[start:stop, env]
        masks[: stop - start, k] = True
    return padded, masks, [(env, start) for env, start, _ in trajs]


def unpad(y: np.ndarray, masks: np.ndarray, num_envs: int) -> np.ndarray:
    """Inverse of :func:`split_and_pad`: ``[T, K, H]`` -> ``[T, B, H]``."""
    valid = y.transpose(1, 0, 2)[masks.T]  # env-major sequence of valid steps
    return valid.reshape(num_envs, y.shape[0], -1).transpose(1, 0, 2)


@pytest.mark.parametrize("rnn_type", ["lstm", "gru"])
def test_sequence_equals_padded_trajectories(rnn_type):
    rnn = RNN(rnn_type, 5, H, LAYERS)
    params = rnn.init(jax.random.key(1))
    rng = np.random.default_rng(1)
    x = rng.normal(size=(T, N, 5)).astype(np.float32)
    dones = np.zeros((T, N), bool)
    dones[2, 0] = dones[5, 0] = dones[0, 1] = dones[6, 3] = dones[7, 2] = True
    # Arbitrary stored states (also after dones), to show each trajectory starts from its own stored state.
    stored = tuple(rng.normal(size=(T, N, LAYERS, H)).astype(np.float32) for _ in range(2 if rnn_type == "lstm" else 1))
    ours = np.asarray(rnn.sequence(params, jnp.asarray(x), tuple(map(jnp.asarray, stored)), jnp.asarray(dones)))
    # Reference: padded trajectories through torch, initial state = stored state at each trajectory's first step.
    padded, masks, starts = split_and_pad(x, dones)
    init = tuple(np.stack([s[start, env] for env, start in starts], axis=0) for s in stored)
    with torch.no_grad():
        y, _ = _torch_rnn(rnn, params)(torch.from_numpy(padded), _to_torch_state(init))
    ref = unpad(y.numpy(), masks, N)
    assert padded.shape[1] == 8 and not masks.all()
    np.testing.assert_allclose(ours, ref, atol=1e-6)


def test_trajectory_minibatches_are_contiguous_env_blocks():
    t, n = 3, 7  # 7 envs, 3 minibatches of 2 envs, env 6 unused
    values = jnp.arange(t * n, dtype=jnp.float32).reshape(t, n)
    batch = Batch(obs={"policy": values[..., None]}, actions=values[..., None], old_log_probs=values, old_values=values,
                  advantages=values, returns=values, old_mean=values[..., None], old_std=values[..., None],
                  dones=values, hidden={"actor": (jnp.stack([values] * 2, -1)[:, :, None],)})
    mbs = trajectory_minibatches(batch, jax.random.key(0), 3)
    assert mbs.returns.shape == (3, t, 2) and mbs.hidden["actor"][0].shape == (3, t, 2, 1, 2)
    for j in range(3):
        np.testing.assert_array_equal(np.asarray(mbs.returns[j]), np.asarray(values[:, 2 * j:2 * j + 2]))
    # No shuffling: the key does not matter.
    again = trajectory_minibatches(batch, jax.random.key(5), 3)
    np.testing.assert_array_equal(np.asarray(again.returns), np.asarray(mbs.returns))


# -- one recurrent PPO update against RSL-RL ---------------------------------------------------------


def _models(rnn_type: str, obs: TensorDict, seed: int):
    torch.manual_seed(seed)
    kwargs = dict(hidden_dims=list(MLP_HIDDEN), activation="elu", rnn_type=rnn_type, rnn_hidden_dim=H,
                  rnn_num_layers=LAYERS)
    actor = RNNModel(obs, OBS_GROUPS, "actor", A, **kwargs,
                     distribution_cfg={"class_name": "GaussianDistribution", "init_std": 1.0, "std_type": "scalar"})
    critic = RNNModel(obs, OBS_GROUPS, "critic", 1, **kwargs)
    return actor, critic


def _rollout_data(seed: int) -> dict:
    rng = np.random.default_rng(seed)
    obs = {k: rng.normal(size=(T + 1, N, d)).astype(np.float32) for k, d in OBS_DIMS.items()}
    dones = np.zeros((T, N), np.int64)
    time_outs = np.zeros((T, N), np.int64)
    dones[2, 0] = dones[5, 1] = dones[3, 3] = dones[0, 2] = 1
    dones[6, 0] = time_outs[6, 0] = 1
    return {"obs": obs, "rewards": rng.normal(size=(T, N)).astype(np.float32), "dones": dones, "time_outs": time_outs}


def _obs_at(data, t):
    return TensorDict({k: torch.from_numpy(v[t]) for k, v in data["obs"].items()}, batch_size=[N])


def _our_params(actor_sd: dict, critic_sd: dict) -> ActorCriticParams:
    def mlp(sd):
        idx = range(0, 2 * len(MLP_HIDDEN) + 1, 2)  # Linear layers of RSL-RL's MLP
        return {"params": {f"Dense_{i}": {"kernel": jnp.array(sd[f"mlp.{j}.weight"].numpy().T),
                                          "bias": jnp.array(sd[f"mlp.{j}.bias"].numpy())} for i, j in enumerate(idx)}}

    return ActorCriticParams(actor={"rnn": rnn_from_torch(actor_sd, "rnn.rnn."), "mlp": mlp(actor_sd),
                                    "std": jnp.array(actor_sd["distribution.std_param"].numpy())},
                             critic={"rnn": rnn_from_torch(critic_sd, "rnn.rnn."), "mlp": mlp(critic_sd)})


def _run_rsl_rl(rnn_type: str, data: dict, seed: int):
    actor, critic = _models(rnn_type, _obs_at(data, 0), seed)
    storage = RolloutStorage("rl", N, T, _obs_at(data, 0), [A], "cpu")
    alg = PPO(actor, critic, storage, num_learning_epochs=2, num_mini_batches=2, desired_kl=0.005, device="cpu")
    alg.train_mode()
    # Run a few steps first so the stored state at t = 0 is not zero.
    with torch.inference_mode():
        for t in range(3):
            actor(_obs_at(data, t)), critic(_obs_at(data, t))
        for t in range(T):
            alg.act(_obs_at(data, t))
            extras = {"time_outs": torch.from_numpy(data["time_outs"][t])}
            alg.process_env_step(_obs_at(data, t + 1), torch.from_numpy(data["rewards"][t]),
                                 torch.from_numpy(data["dones"][t]), extras)
        alg.compute_returns(_obs_at(data, T))
    gen = torch.Generator().manual_seed(100 + seed)
    with torch.no_grad():  # the update starts from a slightly newer policy (positive first KL)
        for p in itertools.chain(actor.parameters(), critic.parameters()):
            p.add_(0.05 * torch.randn(p.shape, generator=gen))
    start = _our_params(actor.state_dict(), critic.state_dict())
    hidden = ActorCriticHidden(**{name: tuple(jnp.asarray(s.numpy().transpose(0, 2, 1, 3)) for s in saved)
                                  for name, saved in (("actor", storage.saved_hidden_state_a),
                                                      ("critic", storage.saved_hidden_state_c))})
    batch = Batch(obs={k: jnp.asarray(storage.observations[k].numpy()) for k in OBS_DIMS},
                  actions=jnp.asarray(storage.actions.numpy()),
                  old_log_probs=jnp.asarray(storage.actions_log_prob[..., 0].numpy()),
                  old_values=jnp.asarray(storage.values[..., 0].numpy()),
                  advantages=jnp.asarray((storage.returns - storage.values)[..., 0].numpy()),
                  returns=jnp.asarray(storage.returns[..., 0].numpy()),
                  old_mean=jnp.asarray(storage.distribution_params[0].numpy()),
                  old_std=jnp.asarray(storage.distribution_params[1].numpy()),
                  dones=jnp.asarray(data["dones"]).astype(bool), hidden=hidden)
    losses = alg.update()
    return start, batch, losses, _our_params(actor.state_dict(), critic.state_dict()), alg.learning_rate


@pytest.mark.parametrize("rnn_type", ["lstm", "gru"])
def test_recurrent_update_matches_rsl_rl(rnn_type):
    seed = 0 if rnn_type == "lstm" else 1
    start, batch, ref_losses, ref_end, ref_lr = _run_rsl_rl(rnn_type, _rollout_data(seed), seed)
    assert float(jnp.abs(batch.hidden.actor[0][0]).max()) > 0.01  # stored state at t = 0 is not zero
    net = ActorCriticRecurrent({k: (d,) for k, d in OBS_DIMS.items()}, OBS_GROUPS, A, MLP_HIDDEN, MLP_HIDDEN,
                               rnn_type=rnn_type, rnn_hidden_dim=H, rnn_num_layers=LAYERS)
    cfg = AlgorithmConfig(num_learning_epochs=2, num_mini_batches=2, desired_kl=0.005)
    tx = optim.make_optimizer(cfg.learning_rate, cfg.max_grad_norm)
    update = jax.jit(ppo.make_update_fn(cfg, net, tx, minibatch_fn=trajectory_minibatches))
    states = chain(ppo.default_extensions(cfg)).init(None, None)
    carry, metrics = update(ppo.SGDCarry(start, tx.init(start), 0), {}, states, batch, jax.random.key(0))
    end = carry.params
    assert float(metrics["learning_rate"]) == pytest.approx(ref_lr, rel=1e-6) and ref_lr != cfg.learning_rate
    for key in ("value", "surrogate", "entropy"):
        np.testing.assert_allclose(float(metrics[key]), ref_losses[key], rtol=1e-5, atol=1e-6, err_msg=key)
    for (path, ours), ref, first in zip(jax.tree_util.tree_flatten_with_path(end)[0], jax.tree.leaves(ref_end),
                                        jax.tree.leaves(start)):
        scale = max(float(np.max(np.abs(np.asarray(ref) - np.asarray(first)))), 1e-12)
        err = float(np.max(np.abs(np.asarray(ours) - np.asarray(ref))))
        assert scale > 1e-5 and err / scale < 2e-4, f"{jax.tree_util.keystr(path)}: err {err:.3g}, change {scale:.3g}"

