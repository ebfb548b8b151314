"""Checkpoints whose train state held ``{"actor": ..., "critic": ...}`` dicts where it now holds the records of
``agile_jax.networks.records`` (params, optimiser moments, recurrent state) restore into the records bit for bit,
and one of another network is still refused in one line."""

from __future__ import annotations

import dataclasses
import os

import jax
import pytest

from agile_jax.io import checkpoint as ckpt
from agile_jax.io.checkpoint import CheckpointError
from agile_jax.networks.records import ActorCriticHidden, ActorParams
from agile_jax.training.runner import OnPolicyRunner
from tests.helpers import leaves_equal, point_mass_config, point_mass_env

RECORDS = (ActorParams, ActorCriticHidden)  # every params record derives from ActorParams


def as_dicts(tree):
    """``tree`` with each record replaced by the dict of its fields: the state as it was saved before records."""
    is_record = lambda node: isinstance(node, RECORDS)  # noqa: E731
    fields = lambda record: {f.name: as_dicts(getattr(record, f.name)) for f in dataclasses.fields(record)}  # noqa: E731
    return jax.tree.map(lambda node: fields(node) if is_record(node) else node, tree, is_leaf=is_record)


def _config(policy_class: str):
    cfg = point_mass_config(num_envs=8)
    cfg.policy.class_name = policy_class
    cfg.policy.rnn_hidden_dim = 8
    return cfg


@pytest.fixture(scope="module", params=["ActorCritic", "ActorCriticRecurrent"])
def dict_checkpoint(request, tmp_path_factory):
    """A run trained one iteration, and a checkpoint of its state with dicts in place of the records."""
    cfg = _config(request.param)
    runner = OnPolicyRunner(point_mass_env(cfg), cfg)
    runner.learn(1)
    state = jax.device_get(runner.state.replace(target_iteration=None))
    run_dir = str(tmp_path_factory.mktemp("dict_layout"))
    checkpointer = ckpt.Checkpointer(run_dir)
    checkpointer.save(1, as_dicts(state))
    checkpointer.close()
    return cfg, run_dir, state


def test_the_checkpoint_has_the_dict_layout(dict_checkpoint):
    _, run_dir, state = dict_checkpoint
    _, meta = ckpt.restore(run_dir, 1, as_dicts(state))
    paths = list(meta["signature"])
    assert any(p.startswith(".params['actor']") for p in paths) and any(".mu['critic']" in p for p in paths)
    assert not any(p.startswith(".params.actor") for p in paths)


def test_a_dict_checkpoint_restores_into_the_records_bit_for_bit(dict_checkpoint):
    cfg, run_dir, state = dict_checkpoint
    runner = OnPolicyRunner(point_mass_env(cfg), cfg)
    runner.load(run_dir)
    restored = jax.device_get(runner.state.replace(target_iteration=None))
    assert jax.tree.structure(restored) == jax.tree.structure(state)
    assert isinstance(restored.params, ActorParams) and isinstance(restored.hidden, ActorCriticHidden)
    assert leaves_equal(restored, state)


def test_a_dict_checkpoint_of_another_network_is_refused_in_one_line(dict_checkpoint):
    cfg, run_dir, _ = dict_checkpoint
    other = _config(cfg.policy.class_name)
    other.policy.actor_hidden_dims = [16]
    with pytest.raises(CheckpointError, match=r"does not fit the current configuration.*\.params\.actor") as err:
        OnPolicyRunner(point_mass_env(other), other).load(run_dir)
    assert "\n" not in str(err.value)


def test_init_from_reads_the_networks_of_a_dict_checkpoint(dict_checkpoint):
    cfg, run_dir, state = dict_checkpoint
    fresh = _config(cfg.policy.class_name)
    fresh.runner.init_from = os.path.join(run_dir, "checkpoints", "1")
    runner = OnPolicyRunner(point_mass_env(fresh), fresh)
    assert leaves_equal(runner.state.params, state.params) and leaves_equal(runner.state.normalizers, state.normalizers)
