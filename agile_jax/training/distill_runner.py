"""``DistillationRunner``: DAgger distillation from an exported teacher, and PPO fine-tuning of the student.

The run state is a :class:`~agile_jax.training.iteration.TrainState` whose ``params`` are the student's
:class:`~agile_jax.networks.records.ActorParams`, ``normalizers`` the student's, and ``hidden`` a
:class:`~agile_jax.training.rollout.DistillationHidden` (the student's and the teacher's state), so
checkpoints, exact resume, logging and the NaN guard are the PPO runner's. The iteration (rollout with the
student acting and the teacher labelling, then :func:`agile_jax.algorithms.distillation.make_update_fn`) is
one jitted, data-parallel program. :func:`finetune_runner` is AGILE's ``StudentFinetuneRecurrent``: an
``OnPolicyRunner`` whose actor starts from the distilled student, with a fresh critic;
:func:`finetune_from_run` starts it from a distillation run directory (``experiments/train.py
policy.class_name=StudentFinetuneRecurrent student=<run directory>``).
"""

from __future__ import annotations

import copy
import os
import warnings

import jax
import jax.numpy as jnp

from agile_jax import config as config_lib
from agile_jax.algorithms import distillation, optim
from agile_jax.extensions import symmetry
from agile_jax.extensions.method import env_spec
from agile_jax.io.logger import Logger
from agile_jax.networks import normalization
from agile_jax.networks.actor_critic import ActorCritic, resolve_obs_groups
from agile_jax.networks.from_config import FINETUNE_CLASS, FINETUNE_USAGE, make_student
from agile_jax.networks.records import ActorParams
from agile_jax.policies.load import load_policy
from agile_jax.policies.loaded import LoadedPolicy
from agile_jax.runtime import parallel
from agile_jax.training.iteration import (
    Algorithm,
    Collected,
    InitialState,
    Learned,
    Trainer,
    TrainState,
    all_finite,
    build_trainer,
    place_state,
)
from agile_jax.training.rollout import DistillationHidden, make_distill_rollout_fn
from agile_jax.training.runner import OnPolicyRunner


def distill_obs_groups(cfg, env, teacher: LoadedPolicy) -> tuple[list[str], list[str]]:
    """``(student groups, teacher groups)``: ``runner.obs_groups`` (``student`` / ``teacher``), else the groups
    recorded in the teacher file for the teacher, else RSL-RL's defaults (a group of the set's name, or ``policy``)."""
    groups = dict(cfg.runner.obs_groups)
    if "teacher" not in groups and teacher.obs_groups:
        groups["teacher"] = list(teacher.obs_groups)
    resolved = resolve_obs_groups(groups, list(env.observation_shapes), ("student", "teacher"))
    return resolved["student"], resolved["teacher"]


def make_distill_learn(cfg, student: ActorCritic, teacher: LoadedPolicy, tx, step_terms, axis: str):
    """``learn(state, collected, key) -> Learned``: the DAgger update on the stored rollout."""
    alg, run = cfg.algorithm, cfg.runner
    update = distillation.make_update_fn(alg, student, tx, run.num_steps_per_env, step_terms, axis)
    steps_per_update = (alg.num_learning_epochs * run.num_steps_per_env) // alg.gradient_length  # optimiser steps

    def learn(state: TrainState, collected: Collected, key) -> Learned:
        tr, infos = collected.transitions, collected.infos
        # Replay from the student state the rollout started from; the next rollout continues from the replay's end.
        batch = distillation.DistillBatch(obs=tr.obs, teacher_actions=tr.teacher_actions, dones=tr.dones,
                                          hidden=jax.tree.map(lambda x: x[0], tr.hidden))
        params, opt_state, student_hidden, metrics = update(state.params, state.opt_state, state.normalizers, batch)
        # The student normaliser sees every stored observation once per iteration (RSL-RL 5.5).
        normalizers = {name: normalization.update(state.normalizers[name], x, run.normalizer_until, axis)
                       for name, x in student.normalizer_inputs(tr.obs).items()}
        # As in RSL-RL, a recurrent teacher restarts from a zero state after every update.
        hidden = DistillationHidden(actor=student_hidden, teacher=teacher.init_state(tr.dones.shape[1]))
        metrics = dict(metrics, learning_rate=optim.get_learning_rate(opt_state),
                       mean_std=student.mean_action_std(params, tr.action_std),
                       mean_step_reward=jax.lax.pmean(jnp.mean(infos.reward), axis))
        finite = {"observations": all_finite(tr.obs, axis), "rewards": all_finite(infos.reward, axis),
                  "teacher_actions": all_finite(tr.teacher_actions, axis), "loss": all_finite(metrics, axis),
                  "params": all_finite(params, axis)}
        new_state = state.replace(params=params, opt_state=opt_state, normalizers=normalizers, hidden=hidden,
                                  num_updates=state.num_updates + steps_per_update)
        return Learned(state=new_state, metrics=metrics, finite=finite)

    return learn


def make_distill_trainer(cfg, env, student: ActorCritic, teacher: LoadedPolicy, teacher_groups, step_terms=(),
                         mesh=None) -> Trainer:
    """The jitted distillation iteration (the same builder and :class:`Trainer` interface as PPO's)."""
    alg = cfg.algorithm
    if alg.class_name != "Distillation":
        raise config_lib.ConfigError(f"unknown algorithm.class_name '{alg.class_name}'; available: ['Distillation']")
    tx = optim.optimizer_from(alg)
    teacher_fn = teacher.bind(teacher_groups, env.observation_shapes)

    def init(key, num_envs: int) -> InitialState:
        hidden = DistillationHidden(actor=student.init_hidden(num_envs).actor, teacher=teacher.init_state(num_envs))
        return InitialState(params=ActorParams(actor=student.init(key).actor), normalizers=student.init_normalizers(),
                            extensions={}, hidden=hidden)

    algorithm = Algorithm(rollout=make_distill_rollout_fn(env, student, teacher_fn, cfg.runner.num_steps_per_env),
                          learn=make_distill_learn(cfg, student, teacher, tx, step_terms, parallel.AXIS), init=init)
    return build_trainer(cfg, env, student, tx, algorithm, mesh)


class DistillationRunner(OnPolicyRunner):
    """Distils an exported teacher into a student (RSL-RL's ``DistillationRunner`` API).

    ``learn(n)``, ``save(path=None)``, ``load(path)``, ``get_inference_policy()`` (the student) and ``export()``
    (the student) behave as in :class:`OnPolicyRunner`; losses are logged as ``Loss/behavior`` (and
    ``Loss/mirror``).

    Args:
        env: a batched env.
        cfg: a :class:`agile_jax.config.DistillationConfig`.
        log_dir: run directory (``None``: nothing is written).
        teacher: a loaded :class:`LoadedPolicy` (default: ``load_policy(cfg.policy.teacher_path)``).
        mirror_obs, mirror_actions: mirror functions for the mirror loss (default: the env's own).
        mesh: device mesh for data-parallel training.
    """

    finite_checks = ("observations", "rewards", "teacher_actions", "loss", "params")

    def __init__(self, env, cfg, log_dir: str | None = None, teacher: LoadedPolicy | None = None, mirror_obs=None,
                 mirror_actions=None, mesh=None):
        if teacher is None and not cfg.policy.teacher_path:
            raise ValueError("Teacher model parameters not loaded. Pass teacher=<policy.onnx|policy.pt> "
                             "(policy.teacher_path) to distill.")
        self.teacher = teacher or load_policy(cfg.policy.teacher_path)
        student_groups, self.teacher_groups = distill_obs_groups(cfg, env, self.teacher)
        if self.teacher.action_dim != env.action_size:
            raise ValueError(f"the teacher outputs {self.teacher.action_dim} actions, the env takes {env.action_size}")
        student = make_student(cfg, env, student_groups)
        terms, self.notices = symmetry.distillation_terms(cfg, env_spec(env, mirror_obs, mirror_actions), student)
        self._setup(env, cfg, log_dir, student,
                    make_distill_trainer(cfg, env, student, self.teacher, self.teacher_groups, terms, mesh))
        for notice in self.notices:
            print(f"[agile_jax] {notice}")

    def checkpoint_meta(self) -> dict:
        return {"teacher_path": self.teacher.source, "teacher_sha256": self.teacher.sha256,
                "teacher_obs_groups": list(self.teacher_groups)}

    def learn(self, num_learning_iterations: int) -> None:
        """Runs ``num_learning_iterations`` distillation iterations (notices go to the log first)."""
        if self.log_dir and self.logger is None and parallel.is_main_process():
            self.logger = Logger(self.log_dir, self.cfg.runner.logger, cfg=self.cfg)
            for notice in self.notices:
                self.logger.text("Distillation/notice", notice)
        super().learn(num_learning_iterations)

    def load(self, path: str, iteration: int | None = None) -> dict:
        """Restores a distillation checkpoint; refuses one written with a different teacher file."""
        meta = super().load(path, iteration)
        saved = meta.get("teacher_sha256")
        if saved and self.teacher.sha256 and saved != self.teacher.sha256:
            warnings.warn(f"the checkpoint was distilled from teacher '{meta.get('teacher_path')}' (sha256 "
                          f"{saved[:12]}...), the current teacher '{self.teacher.source}' differs "
                          f"({self.teacher.sha256[:12]}...)", stacklevel=2)
        return meta


def finetune_runner(env, cfg, student: DistillationRunner, log_dir: str | None = None, **kwargs) -> OnPolicyRunner:
    """AGILE's ``StudentFinetuneRecurrent``: PPO from the distilled student, with a fresh critic.

    The actor of ``cfg.policy`` is set to the student's layout (class, hidden dims, activation, RNN, std type,
    normaliser) and ``runner.obs_groups["actor"]`` to the student's groups; the critic keeps ``cfg``'s settings.
    The actor params, action std and actor normaliser are the student's; critic, optimiser state and
    recurrent state start fresh. Every PPO extension of ``cfg`` is available.

    Args:
        env: the batched env (same observation groups as the student's).
        cfg: a PPO :class:`agile_jax.config.TrainConfig` (copied, not modified).
        student: the distillation runner holding the trained student.
        log_dir: run directory of the PPO run.
        **kwargs: forwarded to :class:`OnPolicyRunner` (``mirror_obs``, ``extensions``, ``mesh`` ...).
    """
    cfg = copy.deepcopy(cfg)
    pol, spol, net = cfg.policy, student.cfg.policy, student.networks
    pol.class_name = "ActorCriticRecurrent" if net.is_recurrent else "ActorCritic"
    pol.actor_hidden_dims, pol.activation = list(spol.student_hidden_dims), spol.activation
    pol.noise_std_type, pol.actor_obs_normalization = spol.noise_std_type, spol.student_obs_normalization
    pol.distribution_cfg = copy.deepcopy(spol.distribution_cfg)
    pol.rnn_type, pol.rnn_hidden_dim, pol.rnn_num_layers = spol.rnn_type, spol.rnn_hidden_dim, spol.rnn_num_layers
    cfg.runner.obs_groups = {**dict(cfg.runner.obs_groups), "actor": list(net.obs_groups["actor"])}
    runner = OnPolicyRunner(env, cfg, log_dir=log_dir, **kwargs)
    fresh, distilled = jax.device_get((runner.state, student.state))
    params = fresh.params.replace(actor=distilled.params.actor)
    normalizers = dict(fresh.normalizers, **{k: v for k, v in distilled.normalizers.items() if k == "actor"})
    _check_same_structure(fresh.params.actor, params.actor)
    state = fresh.replace(params=params, normalizers=normalizers, opt_state=runner.trainer.tx.init(params))
    runner.state = place_state(state, runner.trainer.mesh)
    return runner


def student_run_config(run_dir: str, env_cfg) -> config_lib.DistillationConfig:
    """The config of distillation run ``run_dir`` (its ``config.yaml``), refused in one line unless it distilled a
    recurrent student (``StudentTrainedTeacherRecurrent``), the one ``StudentFinetuneRecurrent`` fine-tunes.

    Args:
        run_dir: the distillation run directory.
        env_cfg: an env config of the run's env class (the template its saved ``env`` section merges into).
    """
    import yaml

    where = f"student='{run_dir}'"
    path = os.path.join(run_dir, "config.yaml")
    if not os.path.isfile(path):
        raise config_lib.ConfigError(f"{where} is not a run directory (no config.yaml); pass the directory of an "
                                     "experiments/distill.py run")
    with open(path) as f:
        text = f.read()
    saved = yaml.safe_load(text) or {}
    algorithm = (saved.get("algorithm") or {}).get("class_name")
    student = (saved.get("policy") or {}).get("class_name")
    if algorithm != "Distillation":
        raise config_lib.ConfigError(f"{where} is a {algorithm} run, not a distillation run; {FINETUNE_CLASS} "
                                     "starts from the student of an experiments/distill.py run")
    if student != "StudentTrainedTeacherRecurrent":
        raise config_lib.ConfigError(f"{where} distilled a {student} student; {FINETUNE_CLASS} fine-tunes a "
                                     "recurrent one (policy.class_name=StudentTrainedTeacherRecurrent in distill.py)")
    template = config_lib.DistillationConfig(env=copy.deepcopy(env_cfg))
    template.runner.obs_groups = {}  # dict fields merge: keep only the run's own groups
    try:
        return config_lib.from_yaml(text, template)
    except config_lib.ConfigError:
        raise
    except Exception as err:  # OmegaConf: an env section of another env class
        raise config_lib.ConfigError(f"{where} does not fit this env's config ({str(err).splitlines()[0]}); "
                                     "fine-tune on the env the student was distilled on") from None


def finetune_from_run(env, cfg, run_dir: str, make_env, log_dir: str | None = None,
                      **kwargs) -> OnPolicyRunner:
    """``policy.class_name=StudentFinetuneRecurrent``: :func:`finetune_runner` from the latest checkpoint of the
    distillation run ``run_dir`` (restored on an env of its own config, so its env count may differ).

    Args:
        env: the batched env of the PPO run.
        cfg: the PPO :class:`agile_jax.config.TrainConfig` (``policy.class_name`` ``StudentFinetuneRecurrent``).
        run_dir: the distillation run directory (its teacher file must still exist).
        make_env: ``make_env(cfg)`` builds the env of a config (``experiments.configs.make_env``).
        log_dir: run directory of the PPO run.
        **kwargs: forwarded to :func:`finetune_runner`.
    """
    if cfg.policy.class_name != FINETUNE_CLASS:
        raise config_lib.ConfigError(f"a student run directory is for policy.class_name={FINETUNE_CLASS} "
                                     f"(got '{cfg.policy.class_name}'): {FINETUNE_USAGE}")
    student_cfg = student_run_config(run_dir, cfg.env)
    student = DistillationRunner(make_env(student_cfg), student_cfg)
    student.load(run_dir)
    return finetune_runner(env, cfg, student, log_dir=log_dir, **kwargs)


def _check_same_structure(expected, given) -> None:
    shapes = lambda tree: jax.tree.map(lambda x: tuple(jnp.shape(x)), tree)  # noqa: E731
    if shapes(expected) != shapes(given):
        raise ValueError("the student's actor does not fit the fine-tuning actor-critic: "
                         f"{shapes(given)} vs {shapes(expected)}")


def load_distillation(run_dir: str, env, teacher_path: str | None = None, template=None,
                      **kwargs) -> DistillationRunner:
    """A :class:`DistillationRunner` restored from ``run_dir`` (its ``config.yaml`` and latest checkpoint).

    Args:
        run_dir: the distillation run directory.
        env: the batched env.
        teacher_path: teacher file (default: the one recorded in the config).
        template: config template (default: a :class:`agile_jax.config.DistillationConfig` with ``env`` of the run).
        **kwargs: forwarded to :class:`DistillationRunner`.
    """
    with open(os.path.join(run_dir, "config.yaml")) as f:
        text = f.read()
    template = copy.deepcopy(template or config_lib.DistillationConfig(env=getattr(env, "env", env).cfg))
    template.runner.obs_groups = {}  # dict fields merge: keep only the run's own groups
    cfg = config_lib.from_yaml(text, template)
    if teacher_path:
        cfg.policy.teacher_path = teacher_path
    runner = DistillationRunner(env, cfg, **kwargs)
    runner.load(run_dir)
    return runner
