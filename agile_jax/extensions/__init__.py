"""Training methods as :class:`~agile_jax.extensions.base.Extension` records, one file per method.

The protocol and :func:`chain` are in :mod:`agile_jax.extensions.base`; AGILE's enhancements (symmetry,
L2C2, reward normalisation, termination bootstrap, entropy annealing, critic warm-up), RND and the state
estimator each live in their own module. The trainer assembles the enabled ones from the config in
:mod:`agile_jax.training.assemble`.
"""

from agile_jax.extensions.base import Chain, Extension, Minibatch, Rollout, Spec, Stats, chain

__all__ = ["Chain", "Extension", "Minibatch", "Rollout", "Spec", "Stats", "chain"]
