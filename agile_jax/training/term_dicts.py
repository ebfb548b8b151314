"""Resuming a run whose reward or termination terms changed since its checkpoint.

An env state keeps one entry per reward term in ``reward_terms`` and ``episode_sums`` and one per termination
term in ``termination_terms`` (:class:`envs.core.EnvState`). They are bookkeeping: the step overwrites
``reward_terms`` and ``termination_terms``, and ``episode_sums`` only feeds the episode logs. So a checkpoint
whose terms differ from the current configuration (a cost turned on for a fine-tuning stage, say) restores
like any other: the restore template takes the checkpoint's terms (:func:`fit_saved_terms`), and the restored
state is then given the current ones (:func:`rekey_like`): a new term's entries start at zero, a dropped
term's are discarded.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

TERM_FIELDS = ("reward_terms", "episode_sums", "termination_terms")


def saved_names(signature: Mapping[str, str], field: str) -> list[str]:
    """The term names of ``env_state.<field>`` in a checkpoint's signature (``.env_state.<field>.<name>`` paths)."""
    prefix = f".env_state.{field}."
    return sorted(path[len(prefix):] for path in signature if path.startswith(prefix))


def _zeros_like(x):
    return jax.jit(jnp.zeros_like)(x)  # jitted, as the state's arrays may be sharded over several hosts


def _with_names(terms: Mapping[str, Any], names: list[str]) -> dict[str, Any]:
    """``terms`` holding exactly ``names``: kept entries as they are, new ones zeros shaped like an existing one."""
    if not terms:
        return dict(terms)
    like = next(iter(terms.values()))
    return {name: terms[name] if name in terms else _zeros_like(like) for name in names}


def _term_dicts_differ(state, names: Mapping[str, list[str]]) -> bool:
    env_state = getattr(state, "env_state", None)
    return env_state is not None and any(
        sorted(getattr(env_state, field)) != names[field] for field in TERM_FIELDS if hasattr(env_state, field))


def _replace_terms(state, names: Mapping[str, list[str]]):
    env_state = state.env_state
    fields = {field: _with_names(getattr(env_state, field), names[field])
              for field in TERM_FIELDS if hasattr(env_state, field)}
    return state.replace(env_state=env_state.replace(**fields))


def fit_saved_terms(template, signature: Mapping[str, str]):
    """``template`` (a train state) with its env state's term dicts keyed as in the checkpoint's ``signature``
    (attribute-path form); ``template`` itself when they already match or the state has no env state."""
    names = {field: saved_names(signature, field) for field in TERM_FIELDS}
    return _replace_terms(template, names) if _term_dicts_differ(template, names) else template


def rekey_like(restored, template):
    """``restored`` with its env state's term dicts keyed as ``template``'s (new terms zero, dropped ones gone)."""
    env_state = getattr(template, "env_state", None)
    if env_state is None:
        return restored
    names = {field: sorted(getattr(env_state, field)) for field in TERM_FIELDS if hasattr(env_state, field)}
    return _replace_terms(restored, names) if _term_dicts_differ(restored, names) else restored
