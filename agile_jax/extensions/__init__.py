"""Training methods as :class:`~agile_jax.extensions.base.Extension` records, one file per method.

The protocol and :func:`chain` are in :mod:`agile_jax.extensions.base`; AGILE's enhancements (symmetry,
L2C2, reward normalisation, termination bootstrap, entropy annealing, critic warm-up), RND, the state
estimator, teacher-student, AMP and TPPO each live in their own module, and each method module ends with its
:class:`~agile_jax.extensions.method.Method` record (``METHOD``). :data:`METHODS` lists them in chain order;
the PPO trainer (:func:`agile_jax.training.ppo_trainer.build_chain`) walks it.
"""

from agile_jax.extensions import (
    amp,
    critic_warmup,
    estimator,
    l2c2,
    reward_norm,
    rnd,
    symmetry,
    teacher_student,
    tppo,
)
from agile_jax.extensions.base import Chain, Extension, Minibatch, Rollout, Spec, Stats, chain
from agile_jax.extensions.method import BuildContext, EnvSpec, Method, env_spec

# Chain order. Stage "first" (rollout-side rewards: AMP's style reward first, so the normaliser sees the mixed
# reward, then RND's intrinsic reward) comes before the user's extra extensions and the timeout bootstrap;
# stage "rest" follows the termination bootstrap and PPO's surrogate, value and entropy terms. The network
# wrappers (estimator, teacher-student) are applied in this order too.
METHODS: tuple[Method, ...] = (
    amp.METHOD,
    reward_norm.METHOD,
    rnd.METHOD,
    symmetry.METHOD,
    estimator.METHOD,
    teacher_student.METHOD,
    l2c2.METHOD,
    tppo.METHOD,
    critic_warmup.METHOD,
)

__all__ = ["METHODS", "BuildContext", "Chain", "EnvSpec", "Extension", "Method", "Minibatch", "Rollout", "Spec",
           "Stats", "chain", "env_spec"]
