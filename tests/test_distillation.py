"""The distillation update against RSL-RL 5.5.1's ``Distillation`` and a hand-written step-by-step reference.

* Two consecutive updates of RSL-RL (``RNNModel`` / ``MLPModel`` student, rollouts through its own ``act`` /
  ``process_env_step``) and of :func:`agile_jax.algorithms.distillation.make_update_fn` from the same weights:
  2 epochs x 8 steps in ``gradient_length=5`` windows (one window spans the epoch boundary, one step is never
  backpropagated), parameters after each update, the behaviour loss and the student state carried into the
  next rollout.
* The same schedule written out by hand in JAX (one loop over steps, a gradient step every 5 steps).
* Behaviour losses against ``torch.nn.functional``; the mirror loss term.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("rsl_rl")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import optax  # noqa: E402
from rsl_rl.algorithms import Distillation  # noqa: E402
from rsl_rl.models import MLPModel, RNNModel  # noqa: E402
from rsl_rl.storage import RolloutStorage  # noqa: E402
from tensordict import TensorDict  # noqa: E402

from agile_jax.algorithms import distillation, optim  # noqa: E402
from agile_jax.config import DistillationAlgorithmConfig  # noqa: E402
from agile_jax.extensions import symmetry  # noqa: E402
from agile_jax.networks.actor_critic import ActorCritic  # noqa: E402
from agile_jax.networks.records import ActorParams  # noqa: E402
from agile_jax.networks.recurrent import ActorCriticRecurrent, reset_state, rnn_from_torch  # noqa: E402
from envs.tasks.point_mass import PointMass  # noqa: E402

T, N, A, H = 8, 4, 3, 8
OBS_DIMS = {"policy": 6, "privileged": 9}
GROUPS = {"student": ["policy"], "teacher": ["privileged"]}
HIDDEN = (16,)


@dataclasses.dataclass(frozen=True)
class Case:
    student: str  # "mlp" | "lstm" | "gru"
    loss_type: str = "mse"
    max_grad_norm: float | None = None
    seed: int = 0

    def config(self) -> DistillationAlgorithmConfig:
        return DistillationAlgorithmConfig(num_learning_epochs=2, gradient_length=5, learning_rate=3e-3,
                                           max_grad_norm=self.max_grad_norm, loss_type=self.loss_type)


CASES = [Case("lstm"), Case("gru", "huber", 0.05, 1), Case("mlp", "mse", 0.05, 2)]


def _obs(data, t):
    return TensorDict({k: torch.from_numpy(v[t]) for k, v in data["obs"].items()}, batch_size=[N])


def _rollout_data(seed: int) -> dict:
    rng = np.random.default_rng(seed)
    dones = np.zeros((T, N), np.int64)
    dones[2, 0] = dones[5, 1] = dones[0, 3] = dones[7, 2] = 1
    dones[:, 1 + seed % 2] = np.roll(dones[:, 1 + seed % 2], seed)
    return {"obs": {k: rng.normal(size=(T + 1, N, d)).astype(np.float32) for k, d in OBS_DIMS.items()},
            "dones": dones}


def _student_models(case: Case, obs):
    torch.manual_seed(case.seed)
    dist = {"class_name": "GaussianDistribution", "init_std": 0.1, "std_type": "scalar"}
    if case.student == "mlp":
        student = MLPModel(obs, GROUPS, "student", A, hidden_dims=list(HIDDEN), distribution_cfg=dist)
    else:
        student = RNNModel(obs, GROUPS, "student", A, hidden_dims=list(HIDDEN), distribution_cfg=dist,
                           rnn_type=case.student, rnn_hidden_dim=H, rnn_num_layers=2)
    return student, MLPModel(obs, GROUPS, "teacher", A, hidden_dims=[12])


def _params(sd: dict) -> ActorParams:
    mlp = {"params": {f"Dense_{i}": {"kernel": jnp.array(sd[f"mlp.{j}.weight"].numpy().T),
                                     "bias": jnp.array(sd[f"mlp.{j}.bias"].numpy())}
                      for i, j in enumerate(range(0, 2 * len(HIDDEN) + 1, 2))}}
    actor = {"mlp": mlp, "std": jnp.array(sd["distribution.std_param"].numpy())}
    if "rnn.rnn.weight_ih_l0" in sd:
        actor["rnn"] = rnn_from_torch(sd, "rnn.rnn.")
    return ActorParams(actor=actor)


def _hidden(state, case: Case):
    """RSL-RL's state (``None`` / tensor / pair, ``[L, N, H]``) in our layout ``[N, L, H]``."""
    if case.student == "mlp":
        return ()
    if state is None:
        return tuple(jnp.zeros((N, 2, H)) for _ in range(2 if case.student == "lstm" else 1))
    parts = state if isinstance(state, tuple) else (state,)
    return tuple(jnp.array(np.array(p.detach().numpy().transpose(1, 0, 2))) for p in parts)


def run_rsl_rl(case: Case) -> list[dict]:
    """Two rollouts and updates with RSL-RL; per update: stored batch, start/end params, loss, final state."""
    data = [_rollout_data(case.seed), _rollout_data(case.seed + 10)]
    student, teacher = _student_models(case, _obs(data[0], 0))
    storage = RolloutStorage("distillation", N, T, _obs(data[0], 0), [A], "cpu")
    cfg = case.config()
    alg = Distillation(student, teacher, storage, num_learning_epochs=cfg.num_learning_epochs,
                       gradient_length=cfg.gradient_length, learning_rate=cfg.learning_rate,
                       max_grad_norm=cfg.max_grad_norm, loss_type=cfg.loss_type)
    alg.train_mode()
    out = []
    for d in data:
        start_hidden = _hidden(student.get_hidden_state(), case)
        with torch.inference_mode():
            for t in range(T):
                alg.act(_obs(d, t))
                alg.process_env_step(_obs(d, t + 1), torch.zeros(N), torch.from_numpy(d["dones"][t]), {})
        batch = distillation.DistillBatch(
            obs={k: jnp.array(storage.observations[k].numpy()) for k in OBS_DIMS},
            teacher_actions=jnp.array(storage.privileged_actions.numpy()),
            dones=jnp.asarray(d["dones"]).astype(bool), hidden=start_hidden)
        start = _params({k: v.clone() for k, v in student.state_dict().items()})
        losses = alg.update()
        out.append({"batch": batch, "start": start, "end": _params(student.state_dict()), "loss": losses["behavior"],
                    "final_hidden": _hidden(alg.last_hidden_states[0], case)})
    return out


def _networks(case: Case) -> ActorCritic:
    kwargs = dict(obs_shapes={k: (d,) for k, d in OBS_DIMS.items()}, action_size=A, actor_hidden_dims=HIDDEN,
                  obs_groups={"actor": ["policy"], "critic": ["policy"]}, critic_hidden_dims=(), init_noise_std=0.1)
    if case.student == "mlp":
        return ActorCritic(**kwargs)
    return ActorCriticRecurrent(**kwargs, rnn_type=case.student, rnn_hidden_dim=H, rnn_num_layers=2)


def _close(ours, ref, atol, what):
    for (path, a), b in zip(jax.tree_util.tree_flatten_with_path(ours)[0], jax.tree.leaves(ref)):
        err = float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
        assert err < atol, f"{what}{jax.tree_util.keystr(path)}: max abs err {err:.3g}"


@pytest.fixture(scope="module", params=CASES, ids=lambda c: f"{c.student}-{c.loss_type}-clip{c.max_grad_norm}")
def case_results(request):
    case = request.param
    return case, run_rsl_rl(case)


def test_two_updates_match_rsl_rl(case_results):
    case, ref = case_results
    cfg, net = case.config(), _networks(case)
    tx = optim.make_optimizer(cfg.learning_rate, cfg.max_grad_norm, "joint")
    with pytest.warns(UserWarning, match="last 1 of 16 steps"):
        update = jax.jit(distillation.make_update_fn(cfg, net, tx, T))
    params, opt_state = ref[0]["start"], tx.init(ref[0]["start"])
    hidden = ref[0]["batch"].hidden
    for i, r in enumerate(ref):
        # The next rollout starts where our previous replay ended (RSL-RL's last_hidden_states).
        _close(hidden, r["batch"].hidden, 1e-5, f"update {i} start state")
        params, opt_state, hidden, metrics = update(params, opt_state, {}, r["batch"]._replace(hidden=hidden))
        np.testing.assert_allclose(float(metrics["behavior"]), r["loss"], rtol=2e-5, err_msg=f"update {i} loss")
        _close(params, r["end"], 2e-5, f"update {i} params")
        _close(hidden, r["final_hidden"], 1e-5, f"update {i} final state")
        moved = [float(jnp.max(jnp.abs(a - b))) for a, b in zip(jax.tree.leaves(r["end"]), jax.tree.leaves(r["start"]))]
        assert max(moved) > 1e-3


def _at(tree, t):
    return jax.tree.map(lambda x: x[t], tree)


def reference_update(cfg, net, params, batch):
    """The replay schedule written out step by step (hand-made truncated BPTT with plain Adam)."""
    tx = optax.adam(cfg.learning_rate)
    opt_state = tx.init(params)
    hidden, window, losses = batch.hidden, [], []

    def window_loss(p, h0, steps):
        total, h = 0.0, h0
        for t in steps:
            h = batch.hidden if t == 0 else h
            mean, h = net.actor_step(p, {}, _at(batch.obs, t), h)
            total = total + jnp.mean(jnp.square(mean - batch.teacher_actions[t]))
            h = reset_state(h, batch.dones[t])
        return total, h

    for k in range(cfg.num_learning_epochs * T):
        window.append(k % T)
        if len(window) == cfg.gradient_length:
            (loss, hidden), grads = jax.value_and_grad(window_loss, has_aux=True)(params, hidden, window)
            updates, opt_state = tx.update(grads, opt_state)
            params, window = optax.apply_updates(params, updates), []
            losses.append(float(loss))
    leftover, hidden = window_loss(params, hidden, window)
    return params, hidden, (sum(losses) + float(leftover)) / (cfg.num_learning_epochs * T)


@pytest.mark.parametrize("student", ["lstm", "mlp"])
def test_update_matches_hand_written_schedule(student):
    case = Case(student)
    net = _networks(case)
    params = ActorParams(actor=net.init(jax.random.key(3)).actor)
    rng = np.random.default_rng(3)
    dones = rng.random((T, N)) < 0.15
    batch = distillation.DistillBatch(obs={k: jnp.asarray(rng.normal(size=(T, N, d)), jnp.float32)
                                           for k, d in OBS_DIMS.items()},
                                      teacher_actions=jnp.asarray(rng.normal(size=(T, N, A)), jnp.float32),
                                      dones=jnp.asarray(dones), hidden=_hidden(None, case))
    if student == "lstm":
        batch = batch._replace(hidden=tuple(jnp.full((N, 2, H), 0.3) for _ in range(2)))
    cfg = dataclasses.replace(case.config(), max_grad_norm=None)
    tx = optim.make_optimizer(cfg.learning_rate, None, "joint")
    with pytest.warns(UserWarning):
        update = distillation.make_update_fn(cfg, net, tx, T)
    ours, _, hidden, metrics = jax.jit(update)(params, tx.init(params), {}, batch)
    ref, ref_hidden, ref_loss = reference_update(cfg, net, params, batch)
    _close(ours, ref, 1e-6, "params")
    _close(hidden, ref_hidden, 1e-6, "state")
    np.testing.assert_allclose(float(metrics["behavior"]), ref_loss, rtol=1e-6)


def test_behavior_losses_match_torch():
    rng = np.random.default_rng(0)
    pred, target = (rng.normal(size=(32, 5)).astype(np.float32) * 2 for _ in range(2))
    for name, ref in (("mse", torch.nn.functional.mse_loss), ("huber", torch.nn.functional.huber_loss)):
        ours = float(distillation.behavior_loss(name)(jnp.asarray(pred), jnp.asarray(target)))
        np.testing.assert_allclose(ours, float(ref(torch.from_numpy(pred), torch.from_numpy(target))), rtol=1e-6)
    with pytest.raises(ValueError, match="Unknown loss type: l1. Supported types are: \\['mse', 'huber'\\]"):
        distillation.behavior_loss("l1")


def test_mirror_term_is_zero_for_equivariant_student_and_weighted():
    net = ActorCritic({"policy": (4,)}, {"actor": ["policy"], "critic": ["policy"]}, 2, (8,), ())
    params = ActorParams(actor=net.init(jax.random.key(0)).actor)
    mirror_obs = lambda o: {"policy": PointMass.mirror_obs({"policy": o["policy"]})["policy"]}  # noqa: E731
    term = symmetry.distillation_term(net, mirror_obs, PointMass.mirror_actions, coeff=0.5)
    obs = {"policy": jnp.asarray(np.random.default_rng(0).normal(size=(6, 4)), jnp.float32)}
    loss, m = term(params, {}, obs, net.actor_mean(params, {}, obs))
    assert float(m["mirror"]) > 1e-4 and float(loss) == pytest.approx(0.5 * float(m["mirror"]))
    zero = jax.tree.map(jnp.zeros_like, params)
    _, m0 = term(zero, {}, obs, net.actor_mean(zero, {}, obs))
    assert float(m0["mirror"]) == 0.0
