"""TPPO (st_rl's teacher-guided PPO): schedules and distances against hand-derived numbers and PyTorch, the
rollout hook (who acts, mask redraws, the queue of buffer_dilation_ratio), the losses, short point-mass runs
from teacher files (TPPO; EstimatorTPPO as DAgger with a dilated buffer and latent distillation; a recurrent
student and teacher with hidden-state resampling), exact resume and one-line config errors."""

from __future__ import annotations

import math
from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from agile_jax.extensions import tppo
from agile_jax.extensions.base import ActStep, Minibatch
from agile_jax.extensions.tppo import TPPOConfig
from agile_jax.networks.actor_critic import ActorCritic
from agile_jax.networks.estimator import with_estimator
from tests.helpers import leaves_equal, point_mass_config, point_mass_env, straight_and_resumed

# -- schedules and distances ------------------------------------------------------------------------------


@pytest.mark.parametrize("option, scale, iteration, expected", [
    ("linear", 100, 0, 1.0), ("linear", 100, 25, 0.75), ("linear", 100, 150, 0.0),  # max(0, 1 - x / s)
    ("exp", 100, 0, 1.0), ("exp", 100, 2, 0.9801), ("exp", 10, 10, 0.9 ** 10),  # (1 - 1 / s) ** x
    ("tanh", 100, 100, 0.5),  # 0.5 * (1 - tanh((x - s) / s))
    ("tanh", 100, 0, 0.5 * (1 + math.tanh(1.0))), ("tanh", 100, 200, 0.5 * (1 - math.tanh(1.0))),
])
def test_teacher_act_prob_schedules_are_st_rls_formulas(option, scale, iteration, expected):
    assert float(tppo.scheduled_prob(option, scale, iteration)) == pytest.approx(expected, rel=1e-6)
    assert float(tppo.coefficient(option, scale)(iteration)) == pytest.approx(expected, rel=1e-6)


def test_a_number_is_a_constant_coefficient():
    assert [float(tppo.coefficient(0.3, 100)(it)) for it in (0, 50, 5000)] == pytest.approx([0.3] * 3)


X = np.array([[0.5, -0.5]], np.float32)
Y = np.array([[0.0, 0.5]], np.float32)  # difference [0.5, -1.0]
STD = np.array([1.0, 0.5], np.float32)
# tanh: BCE of p = (x + 1) / 2 = [0.75, 0.25] against q = (y + 1) / 2 = [0.5, 0.75], averaged, times 2
BCE = [-(0.5 * math.log(0.75) + 0.5 * math.log(0.25)), -(0.75 * math.log(0.25) + 0.25 * math.log(0.75))]


@pytest.mark.parametrize("target, expected", [
    ("real", math.sqrt(1.25)), ("mse_sum", 1.25), ("l1", 1.5),
    ("tanh", 2 * sum(BCE) / 2), ("scaled_tanh", 2 * sum(BCE) / 2 * 1.5 / 2),
    # -log N(y; x, std) with z = [-0.5, 2]: 0.5 * 4.25 + log 0.5 (the std terms) + log(2 pi)
    ("max_log_prob", 0.5 * 4.25 + math.log(1.0) + math.log(0.5) + math.log(2 * math.pi)),
])
def test_distill_targets_match_hand_derived_numbers(target, expected):
    assert float(tppo.distance(target, X, Y, STD)[0]) == pytest.approx(expected, rel=1e-5)


def test_tanh_targets_match_torch_binary_cross_entropy():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    x, y = rng.uniform(-1, 1, (6, 3)).astype(np.float32), rng.uniform(-1, 1, (6, 3)).astype(np.float32)
    x[0, 0], y[1, 1] = 1.0, -1.0  # log(0) is clamped at -100, as in torch
    tx, ty = torch.tensor(x), torch.tensor(y)
    bce = torch.nn.functional.binary_cross_entropy((tx + 1) * 0.5, (ty + 1) * 0.5)  # st_rl's "tanh"
    assert float(jnp.mean(tppo.distance("tanh", x, y))) == pytest.approx(float(bce) * 2, rel=1e-5)
    per_row = torch.nn.functional.binary_cross_entropy((tx + 1) * 0.5, (ty + 1) * 0.5, reduction="none").mean(-1)
    scaled = per_row * 2 * torch.norm(tx - ty, dim=-1, p=1) / 3
    np.testing.assert_allclose(tppo.distance("scaled_tanh", x, y), scaled.numpy(), rtol=1e-5)


def test_queue_layout_keeps_the_last_ratio_times_t_steps():
    assert tppo.queue_layout(4, 1.0).shape == (0, 4)
    assert tppo.queue_layout(4, 2.0).tolist() == [[True] * 4]
    assert tppo.queue_layout(4, 1.5).tolist() == [[False, False, True, True]]  # 6 steps: the last 2 of the previous
    assert tppo.queue_layout(4, 2.5).tolist() == [[True] * 4, [False, False, True, True]]


# -- the rollout hook --------------------------------------------------------------------------------------


def _counting_teacher(action_std=None) -> tppo.TeacherPolicy:
    """Labels ``obs + state`` and counts its steps in its state (so a reset is visible)."""
    def act(obs, state):
        return obs["policy"][:, :2] + state[:, None], state + 1.0

    return tppo.TeacherPolicy(act=act, init_state=lambda n: jnp.zeros((n,)), action_std=action_std)


def _options(**kw) -> TPPOConfig:
    return TPPOConfig(teacher_policy="teacher.onnx", **kw)


def _step(obs, t=0, actions=None) -> ActStep:
    n = obs.shape[0]
    actions = jnp.full((n, 2), 9.0) if actions is None else actions
    return ActStep(obs={"policy": obs}, actions=actions, mean=actions, std=jnp.ones((n, 2)), t=jnp.int32(t))


def _keys(n: int, seed: int = 0):
    return jax.random.split(jax.random.key(seed), n)


def test_masked_envs_execute_the_teacher_and_dones_redraw_the_mask():
    actor = tppo.make_actor(_counting_teacher(), ("policy",), {"policy": (4,)}, 2, 3, 1.0, False)
    state = tppo.TPPOState(act_prob=jnp.float32(0.0), distill_coef=jnp.float32(1.0), key=jax.random.key(0))
    carry = actor.init(None, 4)
    assert carry.use_teacher.tolist() == [True] * 4  # st_rl starts with the teacher in every env
    obs = jnp.arange(16.0).reshape(4, 4)
    carry, actions, record = actor.act(state, carry, _step(obs), _keys(4))
    np.testing.assert_array_equal(actions, obs[:, :2])  # label = obs[:2] + 0 steps
    np.testing.assert_array_equal(record["labels"], obs[:, :2])
    # Episodes of envs 0 and 1 end: with probability 0 their mask clears; the teacher state restarts there.
    carry = actor.process_env_step(state, carry, jnp.array([True, True, False, False]), _keys(4, 1))
    assert carry.use_teacher.tolist() == [False, False, True, True]
    assert carry.teacher_state.tolist() == [0.0, 0.0, 1.0, 1.0]
    carry, actions, record = actor.act(state, carry, _step(obs), _keys(4))
    np.testing.assert_array_equal(actions[:2], jnp.full((2, 2), 9.0))  # the student's sample
    np.testing.assert_array_equal(actions[2:], obs[2:, :2] + 1.0)  # the teacher, one step into its episode
    assert record["use_teacher"].tolist() == [False, False, True, True]
    # With probability 1 a finished episode brings the teacher back.
    one = state.replace(act_prob=jnp.float32(1.0))
    carry = actor.process_env_step(one, carry, jnp.array([True, False, False, False]), _keys(4, 2))
    assert carry.use_teacher.tolist() == [True, False, True, True]


def test_redraw_frequency_follows_teacher_act_prob():
    actor = tppo.make_actor(_counting_teacher(), ("policy",), {"policy": (4,)}, 2, 3, 1.0, False)
    state = tppo.TPPOState(act_prob=jnp.float32(0.3), distill_coef=jnp.float32(1.0), key=jax.random.key(0))
    carry = actor.process_env_step(state, actor.init(None, 20000), jnp.ones((20000,), bool), _keys(20000, 3))
    assert float(jnp.mean(carry.use_teacher)) == pytest.approx(0.3, abs=0.015)


def test_sampled_labels_use_the_teachers_std():
    teacher = _counting_teacher(action_std=jnp.array([0.5, 2.0]))
    actor = tppo.make_actor(teacher, ("policy",), {"policy": (4,)}, 2, 3, 1.0, True)
    state = tppo.TPPOState(act_prob=jnp.float32(1.0), distill_coef=jnp.float32(1.0), key=jax.random.key(0))
    n = 20000
    _, _, record = actor.act(state, actor.init(None, n), _step(jnp.zeros((n, 4))), _keys(n, 4))
    np.testing.assert_allclose(jnp.std(record["labels"], axis=0), [0.5, 2.0], rtol=0.03)
    with pytest.raises(ValueError, match="action_labels_from_sample needs a teacher with an action std"):
        tppo.check_options(_options(action_labels_from_sample=True), SimpleNamespace(is_recurrent=False),
                           _counting_teacher())


def test_sampled_labels_from_an_rsl_rl_checkpoint_teacher(tmp_path):
    pytest.importorskip("torch")
    from agile_jax.export.rsl_rl import save_checkpoint
    from agile_jax.networks.from_config import make_networks
    from agile_jax.training.ppo_trainer import build_context

    teacher_net = ActorCritic(obs_shapes={"policy": (4,), "critic": (5,)}, action_size=2, actor_hidden_dims=(8,),
                              obs_groups={"actor": ["critic"], "critic": ["critic"]}, critic_hidden_dims=(8,))
    params = teacher_net.init(jax.random.key(0))
    params.actor["std"] = jnp.array([0.5, 2.0])
    cfg = point_mass_config()
    cfg.algorithm.tppo_cfg.teacher_policy = save_checkpoint(str(tmp_path / "model_3.pt"), teacher_net, params, {})
    cfg.algorithm.tppo_cfg.action_labels_from_sample = True
    env = point_mass_env(cfg)
    # The checkpoint read by load_policy, on the critic obs.
    (ext,) = tppo.METHOD.build(cfg, build_context(env, cfg), make_networks(cfg, env))
    n = 20000
    obs = {"policy": jnp.ones((n, 4)), "critic": jnp.ones((n, 5))}
    step = ActStep(obs=obs, actions=jnp.zeros((n, 2)), mean=jnp.zeros((n, 2)), std=jnp.ones((n, 2)), t=jnp.int32(0))
    _, _, record = ext.act.act(ext.init(None, None), ext.act.init(None, n), step, _keys(n, 5))
    np.testing.assert_allclose(jnp.mean(record["labels"], 0), teacher_net.actor_mean(params, {}, obs)[0], atol=0.05)
    np.testing.assert_allclose(jnp.std(record["labels"], 0), [0.5, 2.0], rtol=0.03)


def test_queue_hands_each_step_the_same_step_of_the_earlier_rollout():
    # T = 3, ratio 2: one earlier rollout is queued; ratio 1.5 keeps only its last step (int(4.5) - 3 = 1).
    for ratio, keep in ((2.0, [True, True, True]), (1.5, [False, False, True])):
        actor = tppo.make_actor(_counting_teacher(), ("policy",), {"policy": (4,)}, 2, 3, ratio, False)
        state = tppo.TPPOState(act_prob=jnp.float32(1.0), distill_coef=jnp.float32(1.0), key=jax.random.key(0))
        carry, olds = actor.init(None, 2), []
        for t in range(6):  # two rollouts of 3 steps
            obs = jnp.full((2, 4), float(t))
            carry, _, record = actor.act(state, carry, _step(obs, t % 3), _keys(2))
            olds.append(record["old"])
        assert [bool(o["valid"][0, 0]) for o in olds] == [False] * 3 + keep  # empty in the first rollout
        for t in range(3):  # the queued step t is step t of the first rollout: obs t, label t + t (state = t)
            np.testing.assert_array_equal(olds[3 + t]["obs"]["policy"][:, 0], jnp.full((2, 4), float(t)))
            np.testing.assert_array_equal(olds[3 + t]["labels"][:, 0], jnp.full((2, 2), 2.0 * t))


# -- the losses --------------------------------------------------------------------------------------------


def _student(**kw) -> ActorCritic:
    return ActorCritic(obs_shapes={"policy": (4,), "critic": (5,)},
                       obs_groups={"actor": ["policy"], "critic": ["critic"]}, action_size=2,
                       actor_hidden_dims=(8,), critic_hidden_dims=(8,), **kw)


def _minibatch(mean, labels, extras_extra=None, obs=None):
    forward = SimpleNamespace(mean=jnp.asarray(mean), std=jnp.ones((2,)))
    data = SimpleNamespace(obs=obs if obs is not None else {"policy": jnp.zeros((len(mean), 4))})
    extras = {"labels": jnp.asarray(labels), "latents": {}, **(extras_extra or {})}
    return Minibatch(data=data, forward=forward, normalizers={}, extras=extras, num_updates=jnp.int32(0))


def test_distillation_loss_is_the_coefficient_times_the_mean_distance():
    net = _student()
    ext = tppo.extension(net, _counting_teacher(), _options(distillation_loss_coef=0.5, distill_target="l1"), 3)
    state = ext.init(None, None)
    # Rows 0-1 are the original rows (L1 distances 1 and 3); rows 2-3 are augmented copies and ignored.
    mb = _minibatch([[1.0, 0.0], [1.0, 2.0], [50.0, 50.0], [50.0, 50.0]], [[0.0, 0.0], [0.0, 0.0]])
    loss, metrics = ext.loss(state, None, mb, None)
    assert float(metrics["distillation"]) == pytest.approx(2.0)
    assert float(loss) == pytest.approx(1.0)


def test_dilated_loss_averages_current_and_valid_queued_rows():
    net = _student()
    params = net.init(jax.random.key(0))
    ext = tppo.extension(net, _counting_teacher(), _options(distill_target="l1", buffer_dilation_ratio=2.0), 3)
    old_obs = {"policy": jax.random.normal(jax.random.key(1), (2, 1, 4))}
    old_mean = net.actor_mean(params, {}, old_obs)  # [2, 1, 2]
    # queued labels at L1 distance 5 (valid) and 7 (not yet filled: ignored)
    old_labels = old_mean + jnp.array([[[2.0, 3.0]], [[3.0, 4.0]]])
    old = {"obs": old_obs, "labels": old_labels, "latents": {}, "valid": jnp.array([[True], [False]])}
    mb = _minibatch([[1.0, 0.0], [1.0, 2.0]], [[0.0, 0.0], [0.0, 0.0]], {"old": old})
    _, metrics = ext.loss(ext.init(None, None), params, mb, None)
    assert float(metrics["distillation"]) == pytest.approx((1.0 + 3.0 + 5.0) / 3, rel=1e-5)


def test_latent_distillation_pulls_the_student_estimate_towards_the_teacher_latent():
    net = with_estimator(_student(), [], 2, (6,))
    params = net.init(jax.random.key(0))
    teacher = _counting_teacher()._replace(latents={"policy": lambda obs: obs["critic"][:, :2]})
    ext = tppo.extension(net, teacher, _options(distill_latent_coef=0.25, distill_latent_target="mse_sum",
                                                distill_latent_obs_component_mapping={"policy": "critic"}), 3)
    obs = {"policy": jax.random.normal(jax.random.key(1), (3, 4)), "critic": jnp.zeros((3, 5))}
    target = jnp.ones((3, 2))
    mb = _minibatch(jnp.zeros((3, 2)), jnp.zeros((3, 2)), {"latents": {"policy": target}}, obs)
    loss, metrics = ext.loss(ext.init(None, None), params, mb, None)
    expected = jnp.mean(jnp.sum(jnp.square(net.estimate(params, {}, obs) - target), -1))
    assert float(metrics["distill_latent_policy"]) == pytest.approx(float(expected), rel=1e-5)
    assert float(loss) == pytest.approx(0.25 * float(expected), rel=1e-5)  # distillation itself is 0 here
    grads = jax.grad(lambda p: ext.loss(ext.init(None, None), p, mb, None)[0])(params)
    assert float(jnp.abs(grads.estimator["mlp"]["params"]["Dense_0"]["kernel"]).sum()) > 0


def test_clip_min_std_floors_the_std_parameter():
    for std_type, floor in (("scalar", 0.2), ("log", math.log(0.2))):
        net = _student(noise_std_type=std_type)
        ext = tppo.extension(net, _counting_teacher(), _options(clip_min_std=0.2), 3)
        params = net.init(jax.random.key(0))
        params.actor["std"] = jnp.array([floor - 1.0, floor + 1.0])
        _, out, _ = ext.post_update(None, params, {}, None, None)
        np.testing.assert_allclose(out.actor["std"], [floor, floor + 1.0], rtol=1e-6)


@pytest.mark.parametrize("options, message", [
    ({"teacher_act_prob": 1.5}, "teacher_act_prob=1.5: expected a number in"),
    ({"teacher_act_prob": "cosine"}, "one of ['linear', 'exp', 'tanh']"),
    ({"distill_target": "kl"}, "distill_target='kl'"),
    ({"hidden_state_resample_prob": 0.5}, "needs a recurrent policy"),
    ({"distill_latent_obs_component_mapping": {"policy": "critic"}}, "the student has no encoder of 'policy'"),
])
def test_options_that_cannot_work_are_refused(options, message):
    with pytest.raises(ValueError) as err:
        tppo.extension(_student(), _counting_teacher(), _options(**options), 3)
    assert message in str(err.value)


def test_hidden_state_resampling_replaces_stored_states_by_uniform_draws():
    from agile_jax.extensions.base import Batch, Rollout
    from agile_jax.networks.recurrent import ActorCriticRecurrent

    net = ActorCriticRecurrent(**{f: getattr(_student(), f) for f in ("obs_shapes", "obs_groups", "action_size")},
                               rnn_type="lstm", rnn_hidden_dim=3)
    t, n = 50, 40
    full = lambda v: jnp.full((t, n, 1, 3), v)  # noqa: E731
    hidden = {"actor": (full(5.0), full(6.0)), "critic": (full(7.0), full(8.0))}  # LSTM (h, c) of actor and critic
    record = {"labels": jnp.zeros((t, n, 2)), "use_teacher": jnp.ones((t, n), bool), "latents": {}}
    tr = SimpleNamespace(hidden=hidden, extras={"act": {"tppo": record}})
    for prob in (1.0, 0.5):
        ext = tppo.extension(net, _counting_teacher(), _options(hidden_state_resample_prob=prob), 3)
        extras = ext.batch_extras(ext.init(jax.random.key(3), None), Rollout(tr, None, None))
        batch = Batch(*([None] * 9), hidden=hidden, extras={"tppo": extras})
        out = ext.augment(batch).hidden
        changed = np.asarray(out["actor"][0][..., 0, 0] != 5.0)
        assert changed.mean() == pytest.approx(prob, abs=0.03)
        for leaf, value in zip(jax.tree.leaves(out), (5.0, 6.0, 7.0, 8.0)):  # one mask for every part of the state
            assert np.array_equal(np.asarray(leaf[..., 0, 0] != value), changed)
            drawn = np.asarray(leaf)[changed]
            assert drawn.min() >= -1.0 and drawn.max() <= 1.0 and drawn.std() > 0.4  # uniform in [-1, 1]


# -- short runs from teacher files -------------------------------------------------------------------------

PD = np.zeros((5, 2), np.float32)  # the point mass's critic observation [pos, vel, |pos|] -> -2 pos - 2 vel
PD[0, 0] = PD[1, 1] = PD[2, 0] = PD[3, 1] = -2.0


def linear_teacher(path: str, weights: np.ndarray) -> str:
    """A ``policy.onnx`` computing ``obs @ weights`` (batch 1), as ``torch.onnx.export`` of a Linear writes it."""
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["obs", "W"], ["actions"])], "teacher",
        [helper.make_tensor_value_info("obs", TensorProto.FLOAT, [1, weights.shape[0]])],
        [helper.make_tensor_value_info("actions", TensorProto.FLOAT, [1, weights.shape[1]])],
        [numpy_helper.from_array(weights, "W")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)])
    model.ir_version = 7
    onnx.save(model, path)
    return path


def estimator_teacher(out_dir: str) -> str:
    """An exported EstimatorPPO policy on the critic observation whose estimator reads off the velocity exactly
    (one linear layer) and whose actor is the PD controller on it."""
    from agile_jax.export.exporter import export_policy

    base = ActorCritic(obs_shapes={"policy": (4,), "critic": (5,)}, action_size=2, actor_hidden_dims=(),
                       obs_groups={"actor": ["critic"], "critic": ["critic"]}, critic_hidden_dims=(8,))
    net = with_estimator(base, [], 2, ())
    params = net.init(jax.random.key(0))
    select = np.zeros((5, 2), np.float32)
    select[2, 0] = select[3, 1] = 1.0  # estimate = vel
    actor = np.concatenate([PD[:2], np.zeros((3, 2), np.float32), PD[2:4]])  # -2 pos (critic), -2 estimate
    layer = lambda k: {"params": {"Dense_0": {"kernel": jnp.asarray(k), "bias": jnp.zeros(2)}}}  # noqa: E731
    params = params.replace(estimator={"mlp": layer(select)}, actor={**params.actor, "mlp": layer(actor)})
    export_policy(net, params, {}, out_dir, formats=("onnx",))
    return f"{out_dir}/policy.onnx"


def tb_scalars(log_dir) -> dict[str, list[float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(log_dir))
    acc.Reload()
    return {tag: [e.value for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def episode_return(env, policy, steps: int = 60, seed: int = 7) -> float:
    """Mean summed reward over ``steps`` steps of every env under a deterministic ``policy(obs) -> actions``."""
    step = jax.jit(lambda s: env.step(s, policy(s.obs)))
    state, total = jax.jit(env.reset)(jax.random.split(jax.random.key(seed), env.num_envs)), 0.0
    for _ in range(steps):
        state, info = step(state)
        total += float(jnp.mean(info.reward))
    return total


@pytest.fixture(scope="module")
def tppo_run(tmp_path_factory):
    """15 iterations of TPPO (PPO + distillation, exp schedule) from the PD teacher file, composed with AGILE's
    symmetry augmentation, reward normalisation and L2C2."""
    from agile_jax.training.runner import OnPolicyRunner

    tmp = tmp_path_factory.mktemp("tppo")
    cfg = point_mass_config(num_envs=32, steps=16)
    alg = cfg.algorithm
    alg.symmetry_cfg.enabled = alg.reward_normalization_cfg.enabled = alg.l2c2_cfg.enabled = True
    cfg.algorithm.tppo_cfg.teacher_policy = linear_teacher(str(tmp / "teacher.onnx"), PD)
    cfg.algorithm.tppo_cfg.update_times_scale = 10  # teacher_act_prob = 0.9 ** it
    runner = OnPolicyRunner(point_mass_env(cfg), cfg, log_dir=str(tmp / "run"))
    untrained = runner.get_inference_policy()
    runner.learn(15)
    runner.close()
    return runner, untrained, tb_scalars(tmp / "run")


def test_tppo_student_learns_the_teachers_behaviour(tppo_run):
    runner, untrained, scalars = tppo_run
    distill = scalars["Loss/distillation"]
    assert distill[-1] < distill[0] / 10, distill
    # The student alone (no teacher in the loop) collects about the teacher's return, far above where it started.
    env = point_mass_env(runner.cfg)
    teacher = episode_return(env, lambda obs: obs["critic"] @ PD)
    student = episode_return(env, runner.get_inference_policy())
    start = episode_return(env, untrained)
    assert student > start + 0.5 * (teacher - start) and student > 0.8 * teacher, (start, student, teacher)


def test_tppo_logs_its_schedule_and_composes_with_ppo_and_agiles_terms(tppo_run):
    _, _, scalars = tppo_run
    np.testing.assert_allclose(scalars["Train/teacher_act_prob"], [0.9 ** it for it in range(15)], rtol=1e-5)
    fraction = scalars["Train/teacher_act_fraction"]
    assert fraction[0] == 1.0 and fraction[-1] < 0.9  # masks redrawn at dones with the falling probability
    assert {"Loss/surrogate", "Loss/value", "Loss/entropy", "Loss/learning_rate", "Loss/l2c2_actor",
            "Train/reward_scale"} <= set(scalars)


def _held_out_obs(n: int = 256) -> dict:
    """Point-mass observations where the teacher drives: position in [-1, 1], velocity in [-0.5, 0.5]."""
    pos, vel = jax.random.uniform(jax.random.key(11), (2, n, 2), minval=-1.0, maxval=1.0) * jnp.array([[[1.0]],
                                                                                                    [[0.5]]])
    return {"policy": jnp.concatenate([pos, vel], -1),
            "critic": jnp.concatenate([pos, vel, jnp.linalg.norm(pos, axis=-1, keepdims=True)], -1)}


def test_the_latent_of_an_exported_estimator_teacher_is_its_estimate(tmp_path):
    from agile_jax.policies.latents import onnx_estimator_latent

    latent, groups = onnx_estimator_latent(estimator_teacher(str(tmp_path / "exported")))
    obs = _held_out_obs(8)
    assert groups == ("critic",)
    np.testing.assert_allclose(latent(obs["critic"]), obs["critic"][:, 2:4], atol=1e-6)  # the velocity it reads off
    with pytest.raises(ValueError, match="has no state estimator"):
        onnx_estimator_latent(linear_teacher(str(tmp_path / "plain.onnx"), PD))


@pytest.fixture(scope="module")
def estimator_tppo_cfg(tmp_path_factory):
    """EstimatorTPPO as DAgger with a dilated buffer, mse_sum targets and latent distillation."""
    cfg = point_mass_config(num_envs=32, steps=8, schedule="fixed", learning_rate=3e-3)
    cfg.algorithm.num_learning_epochs = 5
    ec, tc = cfg.algorithm.estimator_cfg, cfg.algorithm.tppo_cfg
    ec.enabled, ec.target_components, ec.hidden_dims = True, ["vel"], [16]
    cfg.algorithm.class_name = "EstimatorTPPO"
    tc.teacher_policy = estimator_teacher(str(tmp_path_factory.mktemp("teacher") / "exported"))
    tc.using_ppo, tc.buffer_dilation_ratio, tc.distill_target = False, 2.0, "mse_sum"
    tc.distill_latent_obs_component_mapping, tc.distill_latent_target = {"policy": "critic"}, "real"
    tc.teacher_act_prob = 0.5
    return cfg


def test_estimator_tppo_trains_estimator_and_student_together(estimator_tppo_cfg, tmp_path):
    from agile_jax.training.runner import OnPolicyRunner

    runner = OnPolicyRunner(point_mass_env(estimator_tppo_cfg), estimator_tppo_cfg, log_dir=str(tmp_path))
    net, obs = runner.networks, _held_out_obs()

    def errors(state):  # (estimate - velocity, student - teacher action) RMS on held-out observations
        est = net.estimate(state.params, state.normalizers, obs) - obs["critic"][:, 2:4]
        act = net.actor_mean(state.params, state.normalizers, obs) - obs["critic"] @ PD
        return float(jnp.sqrt(jnp.mean(est ** 2))), float(jnp.sqrt(jnp.mean(act ** 2)))

    before = errors(runner.state)
    runner.learn(12)
    runner.close()
    after = errors(runner.state)
    assert after[0] < before[0] / 3 and after[1] < before[1] / 3, (before, after)
    scalars = tb_scalars(tmp_path)
    for tag, factor in (("Loss/estimator", 4), ("Loss/distillation", 4), ("Loss/distill_latent_policy", 2)):
        first, last = np.mean(scalars[tag][:3]), np.mean(scalars[tag][-3:])
        assert last < first / factor, (tag, scalars[tag])
    assert not {"Loss/surrogate", "Loss/value", "Loss/entropy"} & set(scalars)  # DAgger: no PPO terms
    # The queue holds the previous rollout of every env, all valid after the first iteration.
    queue = runner.state.hidden.extensions["tppo"].queue
    assert queue.labels.shape == (32, 1, 8, 2) and bool(jnp.all(queue.valid))


def test_estimator_tppo_resumes_exactly(estimator_tppo_cfg, tmp_path):
    straight, resumed = straight_and_resumed(estimator_tppo_cfg, tmp_path, n=2)
    assert leaves_equal(straight.state, resumed.state)


@pytest.mark.slow
def test_recurrent_student_and_teacher_with_hidden_state_resampling(tmp_path):
    from agile_jax.export.exporter import export_policy
    from agile_jax.networks.from_config import make_networks
    from agile_jax.policies.load import load_policy
    from agile_jax.training.runner import OnPolicyRunner

    cfg = point_mass_config(num_envs=32, steps=16)
    cfg.policy.class_name, cfg.policy.rnn_type, cfg.policy.rnn_hidden_dim = "ActorCriticRecurrent", "gru", 16
    env = point_mass_env(cfg)
    # A recurrent teacher on the critic observation (a fresh GRU policy: its actions depend on its state).
    teacher_cfg = point_mass_config()
    teacher_cfg.policy = cfg.policy
    teacher_cfg.runner.obs_groups = {"actor": ["critic"], "critic": ["critic"]}
    teacher_net = make_networks(teacher_cfg, env)
    params = teacher_net.init(jax.random.key(5))
    mlp = params.actor["mlp"]["params"]
    last = sorted(mlp)[-1]
    mlp[last] = jax.tree.map(lambda x: 5.0 * x, mlp[last])  # actions of about +-1 rather than +-0.1
    export_policy(teacher_net, params, {}, str(tmp_path / "teacher"), formats=("onnx",))
    path = str(tmp_path / "teacher" / "policy.onnx")
    assert load_policy(path).is_recurrent
    cfg.algorithm.tppo_cfg.teacher_policy, cfg.algorithm.tppo_cfg.hidden_state_resample_prob = path, 0.3
    runner = OnPolicyRunner(env, cfg, log_dir=str(tmp_path / "run"))
    runner.learn(12)
    runner.close()
    distill = tb_scalars(tmp_path / "run")["Loss/distillation"]
    assert np.mean(distill[-3:]) < np.mean(distill[:3]) / 3, distill


# -- the command line --------------------------------------------------------------------------------------


def _train(argv, tmp_path, capsys) -> tuple[int, str]:
    from experiments import cli, train

    code = cli.run(train.main, [*argv, f"runner.log_root={tmp_path}", "runner.progress_bar=false"])
    return code, capsys.readouterr().err.strip()


@pytest.mark.parametrize("override, message", [
    ("algorithm.tppo_cfg.teacher_policy={tmp}/missing.onnx", "error: algorithm.tppo_cfg: teacher policy '{tmp}/missing"
                                                             ".onnx' not found"),
    ("algorithm.tppo_cfg.teacher_policy={tmp}/garbage.onnx", "error: algorithm.tppo_cfg: teacher '{tmp}/garbage.onnx' "
                                                             "is not a readable ONNX policy"),
    ("algorithm.tppo_cfg.teacher_policy={tmp}/wide.onnx", "error: algorithm.tppo_cfg: the teacher '{tmp}/wide.onnx' "
                                                          "maps 7 observations to 2 actions, but the critic groups"),
    ("algorithm.class_name=TPPO", "error: algorithm.class_name=TPPO needs a teacher: set "
                                  "algorithm.tppo_cfg.teacher_policy="),
    ("algorithm.class_name=PPO2", "error: unknown algorithm.class_name 'PPO2'; available: ['PPO', 'APPO', 'ATPPO', "
                                  "'EstimatorPPO'"),
    ("algorithm.class_name=PPO_TS", "error: algorithm.class_name=PPO_TS needs algorithm.ts_cfg.enabled=true"),
])
def test_bad_teachers_end_in_one_line_and_exit_2(override, message, tmp_path, capsys):
    (tmp_path / "garbage.onnx").write_bytes(b"not a model")
    linear_teacher(str(tmp_path / "wide.onnx"), np.zeros((7, 2), np.float32))
    code, err = _train(["config=point_mass", override.format(tmp=tmp_path)], tmp_path / "logs", capsys)
    assert code == 2 and len(err.splitlines()) == 1 and err.startswith(message.format(tmp=tmp_path)), err
    assert not list((tmp_path / "logs").glob("*/*"))  # no run folder left behind


def test_bad_options_end_in_one_line_and_exit_2(tmp_path, capsys):
    teacher = linear_teacher(str(tmp_path / "teacher.onnx"), PD)
    for extra, message in ((["algorithm.tppo_cfg.teacher_act_prob=cosine"], "teacher_act_prob='cosine'"),
                           (["algorithm.tppo_cfg.using_ppo=false"], "set algorithm.schedule=fixed"),
                           (["algorithm.tppo_cfg.using_ppo=false", "algorithm.schedule=fixed",
                             "algorithm.critic_warmup_steps=10"], "set algorithm.critic_warmup_steps=0")):
        code, err = _train(["config=point_mass", f"algorithm.tppo_cfg.teacher_policy={teacher}", *extra],
                           tmp_path / "logs", capsys)
        assert code == 2 and len(err.splitlines()) == 1 and message in err, err


MULTIDEVICE = """
import json, sys, jax, numpy as np
from agile_jax.runtime.parallel import make_mesh
from agile_jax.training.runner import OnPolicyRunner
from tests.helpers import point_mass_config, point_mass_env

assert jax.device_count() == 2, jax.devices()
states = {}
for n in (1, 2):
    cfg = point_mass_config(num_envs=16, steps=8)
    cfg.algorithm.num_mini_batches = 1  # minibatch = every device's whole shard: same samples either way
    tc = cfg.algorithm.tppo_cfg
    tc.teacher_policy, tc.teacher_act_prob, tc.buffer_dilation_ratio = sys.argv[1], 0.5, 2.0
    cfg.env.episode_length = 10  # masks are redrawn at episode ends
    runner = OnPolicyRunner(point_mass_env(cfg), cfg, mesh=make_mesh(n))
    initial = jax.device_get(runner.state.params)
    runner.learn(4)
    states[n] = jax.device_get(runner.state)
diff = lambda a, b: max(float(np.max(np.abs(np.asarray(x, np.float32) - np.asarray(y, np.float32))))
                        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))
print(json.dumps({"params": diff(states[1].params, states[2].params), "moved": diff(states[2].params, initial),
                  "carry": diff(states[1].hidden.extensions, states[2].hidden.extensions),
                  "teacher_share": float(np.mean(states[1].hidden.extensions["tppo"].use_teacher))}))
"""


@pytest.mark.slow
def test_two_devices_match_one_device(tmp_path):
    import json
    import os
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2", PYTHONPATH=root)
    teacher = linear_teacher(str(tmp_path / "teacher.onnx"), PD)
    proc = subprocess.run([sys.executable, "-c", MULTIDEVICE, teacher], env=env, cwd=root, capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    # Per-env keys from global env ids: the same masks, labels and queues on either split.
    assert out["params"] < 1e-5 and out["carry"] < 1e-4 and 0 < out["teacher_share"] < 1, out
    assert out["moved"] > 1e-3, out  # and the run trained


@pytest.mark.slow
@pytest.mark.long  # a T1 training command line: many minutes of MJX compilation on a CPU
def test_t1_velocity_tppo_trains_from_a_t1_run_as_teacher(tmp_path):
    """``train.py config=t1_velocity_airtime`` (the base of the method presets) for one iteration, then
    ``config=t1_velocity_tppo`` with that run directory
    as the teacher (on the actor's observations): the preset trains end to end and logs TPPO's tags."""
    import glob
    import subprocess
    import sys

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    def train(*args):
        proc = subprocess.run([sys.executable, "experiments/train.py", *args, "num_envs=16", "runner.max_iterations=1",
                               f"runner.log_root={tmp_path}", "runner.progress_bar=false"], capture_output=True,
                              text=True, timeout=1800)
        assert proc.returncode == 0, proc.stderr[-2000:]

    train("config=t1_velocity_airtime")
    teacher = glob.glob(str(tmp_path / "t1_velocity_airtime" / "*"))[0]
    train("config=t1_velocity_tppo", f"algorithm.tppo_cfg.teacher_policy={teacher}",
          "algorithm.tppo_cfg.label_action_with_critic_obs=false")
    accumulator = EventAccumulator(glob.glob(str(tmp_path / "t1_velocity_tppo" / "*"))[0]).Reload()
    fraction = accumulator.Scalars("Train/teacher_act_fraction")[0].value
    assert fraction == 1.0  # the mask starts set in every env: the teacher acts everywhere in the first rollout
    assert np.isfinite(accumulator.Scalars("Loss/distillation")[0].value)
