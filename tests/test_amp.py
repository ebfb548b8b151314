"""APPO / ATPPO (st_rl's adversarial motion priors): the discriminator's losses and gradient penalty by hand and
against torch autograd, the style reward, a discriminator that learns to separate expert from random motions, the
style reward moving a point mass towards the reference circles, ATPPO's DAgger term, exact resume and config
errors. The motion file format is tested in tests/test_motion_loader.py."""

from __future__ import annotations

import copy

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from agile_jax.config import AlgorithmConfig, ConfigError, PolicyConfig, RunnerConfig, TrainConfig
from agile_jax.extensions import amp
from agile_jax.extensions.amp import AMPConfig
from agile_jax.extensions.base import Batch, Forward, Minibatch, Rollout
from agile_jax.motion import AMPLoader
from agile_jax.networks.actor_critic import make_inference_fn
from agile_jax.networks.from_config import make_networks
from agile_jax.training.ppo_trainer import build_chain, build_context
from agile_jax.training.runner import OnPolicyRunner
from agile_jax.types import Transition
from envs.core import VecEnv
from envs.tasks.point_mass import PointMass, PointMassConfig
from envs.tasks.point_mass_amp import PointMassAMP, PointMassAMPConfig
from tests.helpers import leaves_equal

EPS = 1.01  # a fresh normaliser divides by std + 0.01 = 1.01


def build_extensions(cfg, env, networks):
    return build_chain(cfg, build_context(env, cfg), networks)


def _dense(kernel, bias) -> dict:
    return {"kernel": jnp.asarray(kernel, jnp.float32), "bias": jnp.asarray(bias, jnp.float32)}


def _transition(obs: dict) -> Transition:
    return Transition(obs=obs, actions=None, rewards=None, dones=None, time_outs=None, values=None, log_probs=None,
                      action_mean=None, action_std=None, hidden=(), extras={})


def amp_config(num_envs: int = 16, steps: int = 8, **amp_kw) -> TrainConfig:
    """A small APPO run on the point mass with circling references (``point_mass_amp`` at test size)."""
    kw = dict(enabled=True, motion_files=["point_mass_circle"], hidden_dims=[64, 64], learning_rate=1e-3,
              discriminator_grad_pen=1.0, task_reward_lerp=0.3)
    return TrainConfig(
        env=PointMassAMPConfig(num_envs=num_envs, episode_length=100),
        policy=PolicyConfig(actor_hidden_dims=[64, 64], critic_hidden_dims=[64, 64]),
        algorithm=AlgorithmConfig(num_mini_batches=2, amp_cfg=AMPConfig(**{**kw, **amp_kw})),
        runner=RunnerConfig(num_steps_per_env=steps, save_interval=2, progress_bar=False, logger="none",
                            obs_groups={"actor": ["policy"], "critic": ["critic"]}),
    )


def _env(cfg: TrainConfig) -> VecEnv:
    return VecEnv(PointMassAMP(cfg.env), cfg.env.num_envs)


# -- the math ----------------------------------------------------------------------------------------------


def test_least_squares_losses_style_reward_and_mixing_by_hand():
    expert, policy = jnp.array([0.5, 1.5]), jnp.array([-1.0, 0.0])
    e, p = amp.least_squares_losses(expert, policy)
    assert float(e) == pytest.approx(0.25) and float(p) == pytest.approx(0.5)  # mean(0.25, 0.25), mean(0, 1)
    # 2 * max(0, 1 - (d - 1)^2 / 4) at d = 1, 3, -1, 0, 2.
    np.testing.assert_allclose(amp.style_reward(jnp.array([1.0, 3.0, -1.0, 0.0, 2.0]), 2.0), [2, 0, 0, 1.5, 1.5])
    style, task, mixed = amp.predict_style_reward(jnp.array([0.0]), jnp.array([4.0]), 2.0, 0.25)
    assert (float(style[0]), float(task[0]), float(mixed[0])) == pytest.approx((1.5, 4.0, 0.75 * 1.5 + 0.25 * 4.0))
    assert float(amp.discriminator_accuracy(jnp.array([0.3, -0.1]), jnp.array([-2.0, 0.5]))) == pytest.approx(0.5)


def _hand_discriminator(grad_pen: float = 5.0, loss_coef: float = 1.0):
    """``D(x) = 3 relu(x1 + 2 x2) + 4 relu(-x1 + 0.5 x2)`` (one hidden ReLU layer of two units)."""
    disc = amp.Discriminator(2, (2,), "relu", 1e-3, grad_pen, loss_coef)
    params = {"params": {"Dense_0": _dense([[1.0, -1.0], [2.0, 0.5]], [0.0, 0.0]),
                         "Dense_1": _dense([[3.0], [4.0]], [0.0])}}
    return disc, params


def test_gradient_penalty_and_discriminator_loss_by_hand():
    disc, params = _hand_discriminator()
    expert = jnp.array([[1.0, 1.0], [-1.0, 2.0]])
    # x = (1, 1): pre-activations (3, -0.5), only unit 1 fires: D = 9, dD/dx = 3 (1, 2) = (3, 6), |g|^2 = 45.
    # x = (-1, 2): pre-activations (3, 2), both fire: D = 9 + 8 = 17, dD/dx = (3 - 4, 6 + 2) = (-1, 8), |g|^2 = 65.
    np.testing.assert_allclose(disc.score(params, expert), [9.0, 17.0])
    assert float(amp.gradient_penalty(lambda x: disc.score(params, x), expert, 5.0)) == pytest.approx(5.0 * 55.0)
    policy = jnp.zeros((1, 2))  # D = 0
    total, parts = disc.loss(params, expert, policy)
    # expert: mean((9 - 1)^2, (17 - 1)^2) = 160, policy: (0 + 1)^2 = 1.
    assert float(parts["discriminator_expert"]) == pytest.approx(80.0)
    assert float(parts["discriminator_policy"]) == pytest.approx(0.5)
    assert float(parts["grad_penalty"]) == pytest.approx(275.0)
    assert float(total) == pytest.approx(80.0 + 0.5 + 275.0)
    scaled, _ = _hand_discriminator(loss_coef=0.5)[0].loss(params, expert, policy)
    assert float(scaled) == pytest.approx(0.5 * 355.5)  # discriminator_loss_coef scales the whole loss
    assert float(parts["Train/discriminator_accuracy"]) == pytest.approx(0.5)  # D(0) = 0 is not < 0


def test_discriminator_loss_and_its_gradients_match_torch_autograd():
    """st_rl's formulas in torch (MSELoss to +-1, ``autograd.grad(create_graph=True)`` penalty) give the same loss
    and the same parameter gradients, the penalty's second-order part included."""
    torch = pytest.importorskip("torch")
    disc = amp.Discriminator(5, (16, 8), "relu", 1e-3, 5.0, 1.0)
    params = disc.init(jax.random.key(3)).params
    rng = np.random.default_rng(0)
    expert, policy = rng.normal(size=(12, 5)).astype(np.float32), rng.normal(size=(12, 5)).astype(np.float32)
    total, _ = disc.loss(params, jnp.asarray(expert), jnp.asarray(policy))
    grads = jax.grad(lambda p: disc.loss(p, jnp.asarray(expert), jnp.asarray(policy))[0])(params)

    layers = [params["params"][f"Dense_{i}"] for i in range(3)]
    weights = [torch.tensor(np.asarray(w["kernel"]).T.copy(), requires_grad=True) for w in layers]
    biases = [torch.tensor(np.asarray(w["bias"]).copy(), requires_grad=True) for w in layers]

    def net(x):
        for i, (w, b) in enumerate(zip(weights, biases)):
            x = torch.nn.functional.linear(x, w, b)
            x = torch.relu(x) if i < 2 else x
        return x

    e = torch.tensor(expert, requires_grad=True)
    expert_d, policy_d = net(e), net(torch.tensor(policy))
    mse = torch.nn.MSELoss()
    grad = torch.autograd.grad(expert_d, e, torch.ones_like(expert_d), create_graph=True, retain_graph=True)[0]
    loss = (0.5 * mse(expert_d, torch.ones_like(expert_d)) + 0.5 * mse(policy_d, -torch.ones_like(policy_d))
            + 5.0 * grad.norm(2, dim=1).pow(2).mean())
    loss.backward()
    assert float(total) == pytest.approx(loss.item(), rel=1e-5)
    for i in range(3):
        g = grads["params"][f"Dense_{i}"]
        np.testing.assert_allclose(np.asarray(g["kernel"]).T, weights[i].grad.numpy(), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(np.asarray(g["bias"]), biases[i].grad.numpy(), rtol=1e-4, atol=1e-5)


def test_shape_rewards_the_observation_after_each_step():
    """A linear discriminator ``D(x) = x_0`` on the fresh normaliser: the style reward of step t reads ``obs[t + 1]``
    (the observation after the step; ``last_obs`` for the last step), mixed as (1 - lerp) style + lerp task."""
    disc = amp.Discriminator(8, (), "relu")
    state = disc.init(jax.random.key(0))
    state = state.replace(params={"params": {"Dense_0": _dense(np.eye(8)[:, :1], [0.0])}})
    first = np.zeros((3, 2, 2, 4), np.float32)  # [T, N, frames, 4]; x_0 is the oldest frame's first value
    first[1, :, 0, 0] = [1.0 * EPS, 3.0 * EPS]  # D = 1 (style 1) and D = 3 (style 0)
    last = np.zeros((2, 2, 4), np.float32)
    last[:, 0, 0] = [-1.0 * EPS, 2.0 * EPS]  # D = -1 (style 0) and D = 2 (style 0.75)
    ext = amp.extension(disc, None, ["amp"], {"amp": (2, 4)}, 1, 1, style_reward_coef=2.0, task_reward_lerp=0.5)
    task = jnp.full((3, 2), 4.0)
    rollout = Rollout(_transition({"amp": jnp.asarray(first)}), task, {"amp": jnp.asarray(last)})
    _, shaped, metrics = ext.shape(state, rollout)
    style = np.array([[2.0, 0.0], [1.5, 1.5], [0.0, 1.5]])  # t = 0 reads obs[1], t = 1 reads obs[2] = 0, t = 2 last
    np.testing.assert_allclose(np.asarray(shaped.rewards), 0.5 * style + 0.5 * 4.0, rtol=1e-5)
    assert float(metrics["Amp/style_reward"]) == pytest.approx(style.mean(), rel=1e-5)
    assert float(metrics["Amp/task_reward"]) == pytest.approx(4.0)


def test_mimic_and_dagger_terms_by_hand():
    disc = amp.Discriminator(4, (4,), "relu")
    state = disc.init(jax.random.key(0))
    teacher = lambda obs: jnp.ones((obs["policy"].shape[0], 2))  # noqa: E731
    ext = amp.extension(disc, None, ["amp"], {"amp": (1, 4)}, 1, 1, mimic_loss_coef=0.5,
                        ref_motion_groups=["ref_motion"], dagger_loss_coef=2.0, teacher=teacher)
    extras = {"ref_obs": jnp.zeros((3, 4)), "ref_motion": jnp.tile(jnp.array([3.0, 4.0, 0.0, 0.0]) * EPS, (3, 1))}
    data = Batch(obs={"policy": jnp.zeros((6, 4))}, actions=None, old_log_probs=None, old_values=None,
                 advantages=None, returns=None, old_mean=None, old_std=None, dones=None)
    mean = jnp.zeros((6, 2)).at[3:].set(1.0)  # rows 3.. are augmented copies: not part of the term
    forward = Forward(mean=mean, std=None, log_prob=None, value=None, entropy=jnp.zeros(3))
    loss, metrics = ext.loss(state, None, Minibatch(data, forward, {}, extras, jnp.int32(0)), jax.random.key(0))
    assert float(metrics["mimic"]) == pytest.approx(5.0, rel=1e-5)  # |(3, 4)|
    assert float(metrics["dagger"]) == pytest.approx(np.sqrt(2.0), rel=1e-6)  # |(0, 0) - (1, 1)|
    assert float(loss) == pytest.approx(0.5 * 5.0 + 2.0 * np.sqrt(2.0), rel=1e-5)


def test_discriminator_accuracy_separating_expert_from_random_motions_rises():
    """The update hook alone: expert windows of the shipped circles against random point-mass motions."""
    loader = AMPLoader(["point_mass_circle"], 0.05, PointMassAMP.amp_layout, PointMassAMP.amp_joint_names, 2)
    disc = amp.Discriminator(loader.observation_dim, (32, 32), "relu", 1e-3, 1.0)
    ext = amp.extension(disc, loader.sample, ["amp"], {"amp": (2, 4)}, 2, 2)
    update = jax.jit(ext.update)

    def random_motion(key):  # positions in the box, velocities of the same scale, in no pattern
        x = jax.random.uniform(key, (9, 16, 2, 4), minval=-2.0, maxval=2.0)
        return Rollout(_transition({"amp": x[:-1]}), jnp.zeros((8, 16)), {"amp": x[-1]})

    state, accuracy = disc.init(jax.random.key(0)), []
    for i in range(25):
        state, metrics = update(state, random_motion(jax.random.key(100 + i)), None, jax.random.key(i))
        accuracy.append(float(metrics["Train/discriminator_accuracy"]))
    assert accuracy[0] < 0.8 and np.mean(accuracy[-5:]) > 0.95, accuracy
    assert float(state.ref_obs_normalizer.count) == 25 * 2 * 128  # rollout samples and as many expert ones


# -- training ---------------------------------------------------------------------------------------------


def _evaluator(runner: OnPolicyRunner, env: VecEnv):
    """``evaluate() -> (mean x v_y - y v_x, mean radius)`` over the second half of 100-step deterministic episodes
    of the runner's current policy (one compiled program for every call)."""
    make_policy = make_inference_fn(runner.networks)

    @jax.jit
    def episode(params, normalizers, start):
        policy = make_policy(params, normalizers, True)

        def step(state, _):
            state, _ = env.step(state, policy(state.obs))
            return state, state.obs["amp"][:, -1]

        return jax.lax.scan(step, start, None, length=100)[1][50:]

    start = env.reset(jax.random.split(jax.random.key(7), env.num_envs))

    def evaluate() -> tuple[float, float]:
        f = np.asarray(episode(runner.state.params, runner.state.normalizers, start))
        radius = np.linalg.norm(f[..., :2], axis=-1)
        return float(np.mean(f[..., 0] * f[..., 3] - f[..., 1] * f[..., 2])), float(np.mean(radius))

    return evaluate


@pytest.mark.slow  # two 150-iteration runs: about 45 s on two cores, beyond the default suite's budget
def test_style_reward_moves_the_point_mass_towards_the_reference_circles():
    """The task reward pays for standing at the origin; the references circle it (radius 1, 1 m/s: angular
    momentum L = x v_y - y v_x = +1). Measure: mean L and radius of deterministic episodes (second half), averaged
    over evaluations after 100, 125 and 150 iterations. Plain PPO stays at the origin (L 0.00, radius < 0.1); the
    same run with APPO (70 % style reward) circles: L = 0.92 here (seeds 2-4: 0.83, 0.47, 0.83). Margin asserted:
    APPO's L at least 0.3 above PPO's, with a radius above 0.3."""
    results = {}
    for enabled in (False, True):
        cfg = amp_config(num_envs=64, steps=16, enabled=enabled)
        env = _env(cfg)
        runner = OnPolicyRunner(env, cfg)
        evaluate = _evaluator(runner, env)
        runner.learn(100)
        evaluations = [evaluate()]
        for _ in range(2):
            runner.learn(25)
            evaluations.append(evaluate())
        results[enabled] = np.mean(evaluations, axis=0)
    (ppo_l, ppo_r), (amp_l, amp_r) = results[False], results[True]
    print(f"angular momentum / radius: PPO {ppo_l:.3f} / {ppo_r:.3f}, APPO {amp_l:.3f} / {amp_r:.3f}")
    assert abs(ppo_l) < 0.05 and ppo_r < 0.2, results
    assert amp_l > ppo_l + 0.3 and amp_r > 0.3, results


def test_resume_is_exact_bit_for_bit_and_logs_the_amp_tags(tmp_path):
    """k iterations, save, restore into a new runner, k more == 2k uninterrupted (ATPPO's mimic term on)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = amp_config(mimic_loss_coef=0.1)
    cfg.runner.logger = "tensorboard"
    straight = OnPolicyRunner(_env(cfg), cfg, log_dir=str(tmp_path / "run1"))
    straight.learn(2)  # saves its state after iteration 2, then runs on without interruption
    straight.learn(2)
    straight.close()
    resumed = OnPolicyRunner(_env(cfg), cfg, log_dir=str(tmp_path / "run2"))
    assert resumed.load(str(tmp_path / "run1"), iteration=2)["iteration"] == 2
    assert not leaves_equal(resumed.state.extensions["amp"], straight.state.extensions["amp"])
    resumed.learn(2)
    resumed.close()
    assert leaves_equal(straight.state.extensions["amp"], resumed.state.extensions["amp"])
    assert leaves_equal(straight.state.params, resumed.state.params)
    assert leaves_equal(straight.state.env_state, resumed.state.env_state)
    tags = set(EventAccumulator(str(tmp_path / "run1")).Reload().Tags()["scalars"])
    expected = {"Loss/discriminator", "Loss/discriminator_expert", "Loss/discriminator_policy", "Loss/grad_penalty",
                "Loss/mimic", "Train/discriminator_accuracy", "Amp/expert_score", "Amp/policy_score",
                "Amp/style_reward", "Amp/task_reward"}
    assert expected <= tags, expected - tags


# -- configuration ----------------------------------------------------------------------------------------


def _extensions(cfg: TrainConfig, env=None):
    env = env or _env(cfg)
    return build_extensions(cfg, env, make_networks(cfg, env))


def test_amp_comes_first_in_the_chain():
    cfg = amp_config()
    cfg.algorithm.reward_normalization_cfg.enabled = True
    assert _extensions(cfg).names[:2] == ("amp", "reward_normalization")


@pytest.mark.parametrize("change, message", [
    ({"task_reward_lerp": 1.5}, "task_reward_lerp must lie in"),
    ({"amp_obs_dim": 7}, r"amp_obs_dim=7 but the 'amp' group holds 8 values"),
    ({"motion_files": ["/nonexistent/walk.npz"]}, r"motion_files: motion file '/nonexistent/walk.npz' not found"),
    ({"motion_files": []}, "no motion files given"),
    ({"dagger_loss_coef": 1.0}, "needs a teacher: set algorithm.amp_cfg.teacher_ac_path"),
    ({"dagger_loss_coef": 1.0, "teacher_ac_path": "/nonexistent/policy.onnx"}, "teacher policy .* not found"),
    ({"activation": "sine"}, "unknown activation 'sine'"),
])
def test_config_errors_are_one_line(change, message):
    with pytest.raises(ConfigError, match=message) as err:
        _extensions(amp_config(**change))
    assert "\n" not in str(err.value)


def test_an_env_without_amp_observations_is_refused():
    cfg = amp_config()
    cfg.env = PointMassConfig(num_envs=16)
    with pytest.raises(ConfigError, match="PointMass has no 'amp' observation group"):
        _extensions(cfg, VecEnv(PointMass(cfg.env), 16))
    cfg = amp_config(mimic_loss_coef=1.0)
    env = _env(cfg)
    env.env.observation_shapes = {k: v for k, v in env.env.observation_shapes.items() if k != "ref_motion"}
    with pytest.raises(ConfigError, match="needs a 'ref_motion' observation group"):
        _extensions(cfg, env)


def test_cli_refuses_a_bad_motion_file_with_exit_code_2(tmp_path):
    import subprocess
    import sys

    bad = tmp_path / "walk.npz"
    bad.write_text("not an archive")
    proc = subprocess.run([sys.executable, "experiments/train.py", "config=point_mass_amp",
                           f"algorithm.amp_cfg.motion_files=[{bad}]", f"runner.log_root={tmp_path}"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    assert "not a readable .npz archive" in lines[-1] and "Traceback" not in proc.stderr


# -- ATPPO ------------------------------------------------------------------------------------------------


def _rotation_teacher(path) -> None:
    """An RSL-RL 5.5.1 MLPModel exported with ``as_jit``: ``a = 0.5 (-y, x)`` on the point-mass policy observation,
    a push around the origin that the task (reach the origin) would never teach."""
    torch = pytest.importorskip("torch")
    tensordict = pytest.importorskip("tensordict")
    from rsl_rl.models import MLPModel

    obs = tensordict.TensorDict({"policy": torch.zeros(4, 4)}, batch_size=[4])
    model = MLPModel(obs, {"actor": ["policy"]}, "actor", 2, hidden_dims=[8], obs_normalization=False,
                     distribution_cfg={"class_name": "GaussianDistribution", "init_std": 1.0, "std_type": "scalar"})
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    with torch.no_grad():  # ELU(z) = z for z > 0: the hidden layer carries pos + 10, the output undoes the offset
        for layer in linears:
            layer.weight.zero_(), layer.bias.zero_()
        linears[0].weight[0, 0], linears[0].weight[1, 1] = 1.0, 1.0
        linears[0].bias[:2] = 10.0
        linears[1].weight[0, 1], linears[1].weight[1, 0] = -0.5, 0.5
        linears[1].bias[:] = torch.tensor([5.0, -5.0])
    torch.jit.script(model.eval().as_jit()).save(str(path))


def test_atppo_dagger_term_pulls_the_policy_to_the_teacher(tmp_path):
    """With ``dagger_loss_coef`` the policy mean approaches the teacher's actions on the states it visits."""
    from agile_jax.policies.load import load_policy

    _rotation_teacher(tmp_path / "teacher.pt")
    probe = jnp.asarray(np.random.default_rng(0).uniform(-3, 3, size=(8, 4)), jnp.float32)
    labels = load_policy(str(tmp_path / "teacher.pt")).apply(probe, ())[0]
    np.testing.assert_allclose(labels, 0.5 * np.stack([-probe[:, 1], probe[:, 0]], -1), atol=1e-5)
    cfg = amp_config(dagger_loss_coef=5.0, teacher_ac_path=str(tmp_path / "teacher.pt"))
    runner = OnPolicyRunner(_env(cfg), cfg)

    def distance() -> float:
        obs = runner.trainer.collect(runner.state).transitions.obs["policy"].reshape(-1, 4)
        mean = make_inference_fn(runner.networks)(runner.state.params, runner.state.normalizers, True)({"policy": obs})
        teacher = 0.5 * jnp.stack([-obs[:, 1], obs[:, 0]], axis=-1)
        return float(jnp.mean(jnp.linalg.norm(mean - teacher, axis=-1)))

    before = distance()
    runner.learn(15)
    after = distance()
    assert after < 0.1 and after < 0.25 * before, (before, after)



@pytest.fixture(scope="module")
def atppo(tmp_path_factory):
    """An ATPPO run on the point mass (rotation teacher) with PPO's params held (learning rate 0, fixed schedule),
    its initial state and the metrics of its first iteration."""
    from agile_jax.extensions.tppo import TPPOConfig

    teacher = tmp_path_factory.mktemp("atppo") / "teacher.pt"
    _rotation_teacher(teacher)
    cfg = amp_config(enabled=False)
    cfg.algorithm.class_name = "ATPPO"
    cfg.algorithm.tppo_cfg = TPPOConfig(teacher_policy=str(teacher), label_action_with_critic_obs=False)
    cfg.algorithm.learning_rate, cfg.algorithm.schedule = 0.0, "fixed"
    runner = OnPolicyRunner(_env(cfg), cfg)
    start = runner.state
    runner.state, out = runner.trainer.iteration(start)
    return cfg, runner, start, {k: float(v) for k, v in jax.device_get(out.metrics).items()}


def test_atppo_class_composes_amp_with_tppo(atppo):
    """``algorithm.class_name=ATPPO`` (st_rl's APPO terms over TPPO): the style reward and discriminator of APPO
    and the teacher labels, teacher actions and distillation loss of TPPO in one run."""
    cfg, runner, _, metrics = atppo
    assert {"amp", "tppo"} <= set(runner.trainer.extensions.names)
    assert metrics["distillation"] > 0 and metrics["discriminator"] > 0 and metrics["Amp/style_reward"] > 0
    cfg = copy.deepcopy(cfg)  # the fixture's config stays as it is
    cfg.algorithm.tppo_cfg.teacher_policy = ""
    with pytest.raises(ConfigError, match="class_name=ATPPO needs a teacher"):
        _extensions(cfg)


def test_atppo_shapes_the_rollout_with_the_style_reward(atppo):
    """On a rollout of the ATPPO run, GAE sees ``(1 - lerp) style + lerp task`` (lerp 0.3), task = the env reward."""
    from jax.sharding import PartitionSpec as P

    from agile_jax.training.iteration import sharded_program

    _, runner, start, _ = atppo
    collected = runner.trainer.collect(start)
    tr = collected.transitions
    amp_ext = next(e for e in runner.trainer.extensions.extensions if e.name == "amp")
    shape = sharded_program(lambda s, r: amp_ext.shape(s, r)[1:], runner.trainer.mesh, (P(), P()), P(),
                             runner.cfg.runner.matmul_precision)
    shaped, parts = shape(start.extensions["amp"], Rollout(tr, tr.rewards, collected.env_state.obs))
    style, task = float(parts["Amp/style_reward"]), float(parts["Amp/task_reward"])
    assert task == pytest.approx(float(jnp.mean(tr.rewards)), rel=1e-5) and style > 0.1
    assert float(jnp.mean(shaped.rewards)) == pytest.approx(0.7 * style + 0.3 * task, rel=1e-5)


def test_atppo_distillation_term_is_tppos(atppo):
    """ATPPO's TPPO term is TPPO's: the same seed as ``class_name=TPPO`` without APPO gives the same rollout (the
    teacher acts in both) and, with PPO's params held, the same distillation loss on the same minibatches."""
    cfg, _, _, metrics = atppo
    alone_cfg = amp_config(enabled=False)
    alone_cfg.algorithm.class_name, alone_cfg.algorithm.tppo_cfg = "TPPO", cfg.algorithm.tppo_cfg
    alone_cfg.algorithm.learning_rate, alone_cfg.algorithm.schedule = 0.0, "fixed"
    alone = OnPolicyRunner(_env(alone_cfg), alone_cfg)
    assert "amp" not in alone.trainer.extensions.names
    out = jax.device_get(alone.trainer.iteration(alone.state)[1].metrics)
    assert float(out["distillation"]) == pytest.approx(metrics["distillation"], rel=1e-5)
    assert float(out["distillation"]) > 0.0


# -- T1 ---------------------------------------------------------------------------------------------------


def test_t1_amp_frame_equals_the_motion_file_features_of_the_same_state():
    """A tilted, moving T1 state written as a motion frame gives the same AMP features as the env computes."""
    from agile_jax.motion.loader import features
    from envs.mdp import amp as amp_obs
    from envs.mdp.math import quat_rotate
    from envs.robots.t1 import t1_robot

    robot = t1_robot()
    rng = np.random.default_rng(1)
    names = robot.action_names
    quat = np.array([np.cos(0.2), 0.3 * np.sin(0.2), -0.5 * np.sin(0.2), np.sqrt(0.66) * np.sin(0.2)])
    fields = {"joint_pos": rng.normal(size=len(names)) * 0.3, "joint_vel": rng.normal(size=len(names)),
              "base_height": np.array(0.62), "base_quat": quat, "base_lin_vel": np.array([0.4, -0.1, 0.05]),
              "base_ang_vel": np.array([0.2, 0.1, -0.7])}
    qpos = np.zeros(robot.model.nq)
    qvel = np.zeros(robot.model.nv)
    qpos[2], qpos[3:7] = 0.62, quat
    qpos[robot.qpos_adr[robot.action_idx]] = fields["joint_pos"]
    qvel[0:3] = np.asarray(quat_rotate(jnp.asarray(quat), jnp.asarray(fields["base_lin_vel"])))  # world frame
    qvel[3:6] = fields["base_ang_vel"]  # MuJoCo's free-joint angular velocity is in the root frame
    qvel[robot.dof_adr[robot.action_idx]] = fields["joint_vel"]
    env_frame = amp_obs.amp_frame(robot, jnp.asarray(qpos, jnp.float32), jnp.asarray(qvel, jnp.float32))
    file_frame = features(fields, amp_obs.amp_layout(len(names)), np.arange(len(names)))
    np.testing.assert_allclose(np.asarray(env_frame), file_frame, atol=1e-5)


def test_t1_velocity_amp_preset_reads_the_shipped_gait():
    """The preset's env has a two-frame ``amp`` group of 34 values whose joints and layout the loader resolves."""
    from experiments.configs import get_preset, make_env

    cfg = get_preset("t1_velocity_amp")
    cfg.env.num_envs = 2
    env = make_env(cfg)
    assert env.observation_shapes["amp"] == (2, 34) and env.env.amp_joint_names == env.env.robot.action_names
    chain = build_extensions(cfg, env, make_networks(cfg, env))
    assert chain.names[0] == "amp"
    loader = AMPLoader(["t1_gait"], env.env.ctrl_dt, env.env.amp_layout, env.env.amp_joint_names, 2)
    assert loader.observation_dim == 68 and len(loader.clips) == 5
    shapes = jax.eval_shape(env.reset, jax.random.split(jax.random.key(0), 2))
    assert shapes.obs["amp"].shape == (2, 2, 34)
    mirrored = env.env.mirror_obs({"amp": jnp.asarray(loader.windows[:3])})["amp"]
    np.testing.assert_allclose(env.env.mirror_obs({"amp": mirrored})["amp"], loader.windows[:3])  # an involution


@pytest.mark.slow
@pytest.mark.long  # a T1 training command line: many minutes of MJX compilation on a CPU
def test_t1_velocity_amp_trains_end_to_end_from_the_command_line(tmp_path):
    """``python experiments/train.py config=t1_velocity_amp num_envs=16 runner.max_iterations=2`` (minutes on a CPU)."""
    import glob
    import subprocess
    import sys

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    proc = subprocess.run([sys.executable, "experiments/train.py", "config=t1_velocity_amp", "num_envs=16",
                           "runner.max_iterations=2", f"runner.log_root={tmp_path}"], capture_output=True, text=True,
                          timeout=1800)
    assert proc.returncode == 0, proc.stderr[-2000:]
    run = glob.glob(str(tmp_path / "t1_velocity_amp" / "*"))[0]
    accumulator = EventAccumulator(run).Reload()
    scalars = lambda tag: [e.value for e in accumulator.Scalars(tag)]  # noqa: E731
    accuracy = scalars("Train/discriminator_accuracy")
    assert len(accuracy) == 2 and all(np.isfinite(scalars("Loss/grad_penalty")))
    # The discriminator tells the shipped gait from the policy's motion within two iterations (measured: accuracy
    # 0.77 -> 0.99, its loss 0.65 -> 0.43, expert scores above policy scores), and the style reward it pays lies in
    # [0, style_reward_coef].
    assert accuracy[-1] > 0.9 and accuracy[-1] >= accuracy[0], accuracy
    assert all(e > p for e, p in zip(scalars("Amp/expert_score"), scalars("Amp/policy_score")))
    assert scalars("Loss/discriminator")[-1] < scalars("Loss/discriminator")[0]
    assert all(0.0 < v <= 0.25 for v in scalars("Amp/style_reward"))  # the preset's style_reward_coef
