"""Numerical parity of the PPO update with RSL-RL 5.5.1 (``rsl-rl-lib``).

Both implementations start from the same actor/critic weights and the same rollout: RSL-RL collects
it through its own ``PPO.act`` / ``PPO.process_env_step`` (timeout bootstrap included) on hand-made
observations, rewards, dones and timeouts. We then compare

* the bootstrapped rewards, returns and (raw and normalised) advantages of
  :func:`agile_jax.algorithms.gae.compute_gae` with ``PPO.compute_returns``;
* after ``PPO.update()`` and :func:`agile_jax.algorithms.ppo.make_update_fn`: every parameter, the
  adaptive learning rate and the logged losses (value, surrogate, entropy).

One minibatch per epoch is used, so RSL-RL's and our shuffles only reorder the terms of each mean.
The networks are perturbed after the rollout (the rollout was collected by a slightly older policy):
otherwise the first minibatch's KL is exactly zero in float32 on both sides and the learning-rate rule
would only be exercised from the second minibatch on; with the perturbation every step's KL is well
inside one branch of the rule (0.015-0.05 against thresholds 0.0025/0.01, 0.005/0.02 and 0.1).

RSL-RL 5.x clips the actor and critic gradient norms separately (``grad_clip_mode="per_network"``);
for ``"joint"`` (one norm over all parameters, as NVIDIA AGILE) RSL-RL's update is run with its two
``clip_grad_norm_`` calls replaced by one ``clip_grad_norm_`` over actor and critic parameters.
"""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("rsl_rl")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from rsl_rl.algorithms import PPO  # noqa: E402
from rsl_rl.models import MLPModel  # noqa: E402
from rsl_rl.storage import RolloutStorage  # noqa: E402
from tensordict import TensorDict  # noqa: E402

from agile_jax.algorithms import gae, optim, ppo  # noqa: E402
from agile_jax.config import AlgorithmConfig  # noqa: E402
from agile_jax.extensions.base import Batch, chain  # noqa: E402
from agile_jax.networks.actor_critic import ActorCritic  # noqa: E402
from agile_jax.networks.records import ActorCriticParams  # noqa: E402

T, N = 8, 4
OBS_DIMS = {"policy": 6, "critic": 8}
OBS_GROUPS = {"actor": ["policy"], "critic": ["critic"]}
NUM_ACTIONS = 3
HIDDEN = (32, 32)

# Tolerances: returns/advantages are a handful of float32 operations; the update runs a few Adam steps.
GAE_ATOL = 1e-6
# Parameters after the update, relative to the largest |parameter| of each tensor (measured: <= 4e-7).
PARAM_RTOL = 1e-5
# Parameter *changes* (end - start), relative to the largest |change| of each tensor. The changes are ~1e-3 while
# the parameters are ~0.5, so one float32 ulp of a parameter is already ~2e-5 of its change (measured: <= 2.2e-5).
DELTA_RTOL = 1e-4
# The surrogate is a mean of terms of both signs around zero (normalised advantages), so it gets an absolute floor.
LOSS_ATOL = 1e-6


@dataclasses.dataclass(frozen=True)
class Case:
    """One parity configuration (fields are ``AlgorithmConfig`` values)."""

    name: str
    schedule: str = "adaptive"
    desired_kl: float = 0.01
    use_clipped_value_loss: bool = True
    grad_clip_mode: str = "per_network"
    max_grad_norm: float = 1.0
    learning_rate: float = 1e-3
    num_learning_epochs: int = 3
    clip_param: float = 0.2
    entropy_coef: float = 0.01
    seed: int = 0

    def algorithm_config(self) -> AlgorithmConfig:
        """Our config for this case (one minibatch per epoch)."""
        return AlgorithmConfig(
            learning_rate=self.learning_rate, num_learning_epochs=self.num_learning_epochs, num_mini_batches=1,
            schedule=self.schedule, desired_kl=self.desired_kl, clip_param=self.clip_param,
            entropy_coef=self.entropy_coef, max_grad_norm=self.max_grad_norm,
            use_clipped_value_loss=self.use_clipped_value_loss, grad_clip_mode=self.grad_clip_mode,
        )


# The first-minibatch KL is ~0.015-0.05 here: desired_kl 0.005 / 0.01 makes every step lower the lr, 0.2 raise it.
CASES = [
    Case("adaptive_clipped_value", desired_kl=0.005),
    Case("adaptive_unclipped_value", desired_kl=0.01, use_clipped_value_loss=False, seed=1),
    Case("fixed_schedule", schedule="fixed", learning_rate=3e-3, num_learning_epochs=2, seed=2),
    Case("joint_grad_clip_lr_increase", desired_kl=0.2, grad_clip_mode="joint", max_grad_norm=0.5, seed=3),
]


# -- RSL-RL side -----------------------------------------------------------------------------------


def _make_torch_models(seed: int, obs: TensorDict) -> tuple[MLPModel, MLPModel]:
    torch.manual_seed(seed)
    actor = MLPModel(obs, OBS_GROUPS, "actor", NUM_ACTIONS, hidden_dims=list(HIDDEN), activation="elu",
                     distribution_cfg={"class_name": "GaussianDistribution", "init_std": 1.0, "std_type": "scalar"})
    critic = MLPModel(obs, OBS_GROUPS, "critic", 1, hidden_dims=list(HIDDEN), activation="elu")
    return actor, critic


def _hand_made_rollout(seed: int) -> dict[str, np.ndarray]:
    """Observations ``[T+1, N, D]`` (the last one bootstraps), rewards, dones and timeouts ``[T, N]``."""
    rng = np.random.default_rng(seed)
    obs = {k: rng.normal(size=(T + 1, N, d)).astype(np.float32) for k, d in OBS_DIMS.items()}
    rewards = rng.normal(size=(T, N)).astype(np.float32)
    dones = np.zeros((T, N), np.int64)
    time_outs = np.zeros((T, N), np.int64)
    dones[2, 0] = dones[5, 1] = dones[3, 3] = dones[7, 2] = 1  # terminations ...
    dones[4, 2] = time_outs[4, 2] = 1  # ... and timeouts (a subset of dones)
    dones[6, 0] = time_outs[6, 0] = 1
    dones[7, 3] = time_outs[7, 3] = 1
    return {"obs": obs, "rewards": rewards, "dones": dones, "time_outs": time_outs}


def _obs_at(data: dict, t: int) -> TensorDict:
    return TensorDict({k: torch.from_numpy(v[t]) for k, v in data["obs"].items()}, batch_size=[N])


def _joint_clip_grad_norm(actor: MLPModel, critic: MLPModel, clip_fn):
    """``clip_grad_norm_`` replacement: the actor call clips actor+critic jointly, the critic call is a no-op."""
    first_actor_param = next(actor.parameters())

    def clip(parameters, max_norm, *args, **kwargs):
        parameters = list(parameters)
        if any(p is first_actor_param for p in parameters):
            return clip_fn(itertools.chain(actor.parameters(), critic.parameters()), max_norm, *args, **kwargs)
        return torch.zeros(())

    return clip


def run_rsl_rl(case: Case, data: dict, monkeypatch) -> dict:
    """Rollout, returns and one update with RSL-RL; returns the data both sides need."""
    obs0 = _obs_at(data, 0)
    actor, critic = _make_torch_models(case.seed, obs0)
    storage = RolloutStorage("rl", N, T, obs0, [NUM_ACTIONS], "cpu")
    alg = PPO(actor, critic, storage, num_learning_epochs=case.num_learning_epochs, num_mini_batches=1,
              clip_param=case.clip_param, gamma=0.99, lam=0.95, value_loss_coef=1.0, entropy_coef=case.entropy_coef,
              learning_rate=case.learning_rate, max_grad_norm=case.max_grad_norm,
              use_clipped_value_loss=case.use_clipped_value_loss, schedule=case.schedule, desired_kl=case.desired_kl,
              device="cpu")
    alg.train_mode()
    with torch.inference_mode():
        for t in range(T):
            alg.act(_obs_at(data, t))
            extras = {"time_outs": torch.from_numpy(data["time_outs"][t])}
            alg.process_env_step(_obs_at(data, t + 1), torch.from_numpy(data["rewards"][t]),
                                 torch.from_numpy(data["dones"][t]), extras)
    # The update starts from a slightly newer policy than the one that acted (see module docstring).
    gen = torch.Generator().manual_seed(100 + case.seed)
    with torch.no_grad():
        for p in itertools.chain(actor.parameters(), critic.parameters()):
            p.add_(0.05 * torch.randn(p.shape, generator=gen))
    start = {"actor": {k: v.clone() for k, v in actor.state_dict().items()},
             "critic": {k: v.clone() for k, v in critic.state_dict().items()}}
    with torch.inference_mode():
        alg.compute_returns(_obs_at(data, T))
    stored = {
        "obs": {k: storage.observations[k].numpy().copy() for k in OBS_DIMS},
        "actions": storage.actions.numpy().copy(),
        "rewards": storage.rewards[..., 0].numpy().copy(),
        "values": storage.values[..., 0].numpy().copy(),
        "log_probs": storage.actions_log_prob[..., 0].numpy().copy(),
        "mean": storage.distribution_params[0].numpy().copy(),
        "std": storage.distribution_params[1].numpy().copy(),
        "returns": storage.returns[..., 0].numpy().copy(),
        "advantages": storage.advantages[..., 0].numpy().copy(),
    }
    if case.grad_clip_mode == "joint":
        monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_",
                            _joint_clip_grad_norm(actor, critic, torch.nn.utils.clip_grad_norm_))
    losses = alg.update()
    monkeypatch.undo()
    end = {"actor": {k: v.detach().numpy().copy() for k, v in actor.state_dict().items()},
           "critic": {k: v.detach().numpy().copy() for k, v in critic.state_dict().items()}}
    return {"start": start, "end": end, "stored": stored, "losses": losses, "learning_rate": alg.learning_rate}


# -- our side --------------------------------------------------------------------------------------


def _networks() -> ActorCritic:
    return ActorCritic(obs_shapes={k: (d,) for k, d in OBS_DIMS.items()}, obs_groups=OBS_GROUPS,
                       action_size=NUM_ACTIONS, actor_hidden_dims=HIDDEN, critic_hidden_dims=HIDDEN, activation="elu")


def _linear_indices() -> list[int]:
    """Indices of the ``nn.Linear`` layers inside RSL-RL's ``MLP`` (Linear, act, Linear, act, ..., Linear)."""
    return [2 * i for i in range(len(HIDDEN) + 1)]


def params_from_torch(state: dict) -> ActorCriticParams:
    """Our params from the actor/critic ``state_dict`` s (``weight.T -> kernel``, ``bias -> bias``)."""

    def mlp(sd):
        return {"params": {f"Dense_{i}": {"kernel": jnp.asarray(sd[f"mlp.{j}.weight"].numpy().T),
                                          "bias": jnp.asarray(sd[f"mlp.{j}.bias"].numpy())}
                           for i, j in enumerate(_linear_indices())}}

    actor, critic = state["actor"], state["critic"]
    return ActorCriticParams(actor={"mlp": mlp(actor), "std": jnp.asarray(actor["distribution.std_param"].numpy())},
                             critic={"mlp": mlp(critic)})


def params_to_torch_layout(params: ActorCriticParams) -> dict:
    """Our params as ``{"actor": {name: array}, "critic": {...}}`` with RSL-RL's names and shapes."""

    def mlp(p):
        out = {}
        for i, j in enumerate(_linear_indices()):
            out[f"mlp.{j}.weight"] = np.asarray(p["params"][f"Dense_{i}"]["kernel"]).T
            out[f"mlp.{j}.bias"] = np.asarray(p["params"][f"Dense_{i}"]["bias"])
        return out

    return {"actor": {**mlp(params.actor["mlp"]), "distribution.std_param": np.asarray(params.actor["std"])},
            "critic": mlp(params.critic["mlp"])}


def run_ours(case: Case, data: dict, start: dict, stored: dict) -> dict:
    """Returns and one update with agile_jax on RSL-RL's stored rollout."""
    cfg = case.algorithm_config()
    networks = _networks()
    params = params_from_torch(start)
    # Returns: raw rewards -> timeout bootstrap -> GAE, with our critic on the final observation.
    values = jnp.asarray(stored["values"])
    rewards = gae.bootstrap_timeouts(jnp.asarray(data["rewards"]), values, jnp.asarray(data["time_outs"]), cfg.gamma)
    last_values = networks.value(params, {}, {k: jnp.asarray(v[T]) for k, v in data["obs"].items()})
    advantages, returns = gae.compute_gae(rewards, values, jnp.asarray(data["dones"]), last_values, cfg.gamma, cfg.lam)
    batch = Batch(obs={k: jnp.asarray(v) for k, v in stored["obs"].items()}, actions=jnp.asarray(stored["actions"]),
                  old_log_probs=jnp.asarray(stored["log_probs"]), old_values=values, advantages=advantages,
                  returns=returns, old_mean=jnp.asarray(stored["mean"]), old_std=jnp.asarray(stored["std"]),
                  dones=jnp.asarray(data["dones"]).astype(bool))
    tx = optim.make_optimizer(cfg.learning_rate, cfg.max_grad_norm, cfg.grad_clip_mode, cfg.optimizer)
    update = jax.jit(ppo.make_update_fn(cfg, networks, tx))
    states = chain(ppo.default_extensions(cfg)).init(None, None)
    carry, metrics = update(ppo.SGDCarry(params, tx.init(params), 0), {}, states, batch, jax.random.key(case.seed))
    new_params = carry.params
    return {
        "rewards": np.asarray(rewards),
        "returns": np.asarray(returns),
        "advantages_raw": np.asarray(advantages),
        "advantages": np.asarray(gae.normalize_advantages(advantages)),
        "end": params_to_torch_layout(new_params),
        "metrics": {k: float(v) for k, v in metrics.items()},
    }


# -- comparison ------------------------------------------------------------------------------------


def _errors(ours: np.ndarray, ref: np.ndarray) -> tuple[float, float]:
    """``(max abs error, max abs error / max |ref|)``."""
    ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
    abs_err = float(np.max(np.abs(ours - ref)))
    return abs_err, abs_err / max(float(np.max(np.abs(ref))), 1e-12)


def _param_errors(ours: dict, ref: dict) -> dict[str, tuple[float, float]]:
    return {f"{net}.{name}": _errors(ours[net][name], ref[net][name]) for net in ref for name in ref[net]}


def _deltas(end: dict, start: dict) -> dict:
    """``end - start`` per tensor, in float64 (``start`` holds torch tensors)."""
    return {net: {name: np.asarray(end[net][name], np.float64) - start[net][name].numpy().astype(np.float64)
                  for name in end[net]} for net in end}


@pytest.fixture(scope="module")
def results() -> dict:
    """Both implementations on every case (run once per module)."""
    out = {}
    with pytest.MonkeyPatch.context() as monkeypatch:
        for case in CASES:
            data = _hand_made_rollout(case.seed)
            ref = run_rsl_rl(case, data, monkeypatch)
            out[case.name] = (case, data, ref, run_ours(case, data, ref["start"], ref["stored"]))
    return out


@pytest.mark.parametrize("case_name", [c.name for c in CASES])
def test_returns_and_advantages(results, case_name):
    """Timeout bootstrap, GAE returns and (normalised) advantages match ``PPO.compute_returns``."""
    _, _, ref, ours = results[case_name]
    stored = ref["stored"]
    np.testing.assert_allclose(ours["rewards"], stored["rewards"], rtol=0, atol=GAE_ATOL)
    np.testing.assert_allclose(ours["returns"], stored["returns"], rtol=0, atol=GAE_ATOL)
    np.testing.assert_allclose(ours["advantages_raw"], stored["returns"] - stored["values"], rtol=0, atol=GAE_ATOL)
    np.testing.assert_allclose(ours["advantages"], stored["advantages"], rtol=0, atol=GAE_ATOL)


@pytest.mark.parametrize("case_name", [c.name for c in CASES])
def test_update(results, case_name):
    """Params, parameter changes, learning rate and losses after one update match ``PPO.update()``."""
    case, _, ref, ours = results[case_name]
    for name, (abs_err, rel_err) in _param_errors(ours["end"], ref["end"]).items():
        assert rel_err < PARAM_RTOL, f"params {name}: max abs err {abs_err:.3g}, rel {rel_err:.3g}"
    ref_delta = _deltas(ref["end"], ref["start"])
    for name, (abs_err, rel_err) in _param_errors(_deltas(ours["end"], ref["start"]), ref_delta).items():
        assert rel_err < DELTA_RTOL, f"change of {name}: max abs err {abs_err:.3g}, rel {rel_err:.3g}"
    # Every tensor must have moved, otherwise the comparison would be vacuous.
    for net, tensors in ref_delta.items():
        for name, d in tensors.items():
            assert np.max(np.abs(d)) > 1e-5, f"{net}.{name} did not change"
    np.testing.assert_allclose(ours["metrics"]["learning_rate"], ref["learning_rate"], rtol=1e-6)
    if case.schedule == "fixed":
        assert ref["learning_rate"] == case.learning_rate
    else:
        assert ref["learning_rate"] != case.learning_rate, "the adaptive schedule should have changed the lr"
    for key in ("value", "surrogate", "entropy"):
        np.testing.assert_allclose(ours["metrics"][key], ref["losses"][key], rtol=PARAM_RTOL, atol=LOSS_ATOL,
                                   err_msg=key)


def test_cases_are_discriminative(results):
    """Value clipping, gradient clipping and the joint/per-network choice all change RSL-RL's result here."""
    variants = {
        "adaptive_clipped_value": [{"use_clipped_value_loss": False}, {"max_grad_norm": 1e9},
                                   {"grad_clip_mode": "joint"}],
        "joint_grad_clip_lr_increase": [{"grad_clip_mode": "per_network"}, {"max_grad_norm": 1e9}],
    }
    with pytest.MonkeyPatch.context() as monkeypatch:
        for name, changes in variants.items():
            case, data, ref, _ = results[name]
            for change in changes:
                other = run_rsl_rl(dataclasses.replace(case, **change), data, monkeypatch)
                errs = _param_errors(_deltas(other["end"], ref["start"]), _deltas(ref["end"], ref["start"]))
                assert max(rel for _, rel in errs.values()) > 10 * DELTA_RTOL, f"{name}: {change} changes nothing"
