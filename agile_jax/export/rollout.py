"""Real observations for the export parity check, and the runner-facing entry point.

:func:`export_runner` is what ``OnPolicyRunner`` (or a script) calls after training: it checks the
export on the runner's current env observations (free, already on the device) and optionally on a
short deterministic rollout.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from agile_jax.export.exporter import export_policy
from agile_jax.networks.actor_critic import make_inference_fn
from agile_jax.networks.recurrent import make_recurrent_inference_fn, reset_state
from agile_jax.runtime import parallel
from agile_jax.types import PRNGKey


def collect_observations(env: Any, policy: Callable, key: PRNGKey, num_steps: int, num_envs: int | None = None,
                         policy_state: Callable[[int], Any] | None = None) -> dict[str, np.ndarray]:
    """Observations of a deterministic rollout from fresh resets, ``{group: [T + 1, N, ...]}``.

    Args:
        env: a batched env (``reset(keys [N])``, ``step(state, actions [N, A]) -> (state, info)``).
        policy: ``obs -> actions`` (e.g. the deterministic inference policy), or with ``policy_state``
            ``(obs, state) -> (actions, state)`` (a recurrent policy; its state is zeroed at dones).
        key: PRNG key of the resets.
        num_steps: control steps ``T`` after the reset.
        num_envs: batch size ``N`` (default: ``env.num_envs``).
        policy_state: ``num_envs -> initial policy state`` for a recurrent policy.
    """
    n = int(num_envs or env.num_envs)
    stateful = policy if policy_state is not None else (lambda obs, carried: (policy(obs), carried))

    @jax.jit
    def run(keys):
        state = env.reset(keys)

        def step(carry, _):
            state, carried = carry
            actions, carried = stateful(state.obs, carried)
            nxt, info = env.step(state, actions)
            return (nxt, reset_state(carried, info.done)), state.obs

        (last, _), obs = jax.lax.scan(step, (state, policy_state(n) if policy_state else ()), None,
                                      length=num_steps)
        return jax.tree.map(lambda seq, x: jnp.concatenate([seq, x[None]], axis=0), obs, last.obs)

    return jax.tree.map(np.asarray, jax.device_get(run(jax.random.split(key, n))))


def export_runner(runner: Any, out_dir: str, rollout_steps: int = 0, seed: int = 0, **kwargs) -> dict:
    """Exports a runner's current policy with the parity gate of :func:`export_policy`.

    The real observations are the runner's current env observations (set ``env_state``) and, with
    ``rollout_steps > 0``, a deterministic rollout from fresh resets (set ``rollout``; this compiles the
    env once more).

    Args:
        runner: an ``OnPolicyRunner`` (uses ``networks``, ``state.params``, ``state.normalizers``,
            ``state.env_state`` and ``env``).
        out_dir: destination directory.
        rollout_steps: length of the extra rollout (0: none).
        seed: seed of the rollout resets and of the random observations.
        **kwargs: forwarded to :func:`export_policy` (``formats``, ``tol``, ``opset``, ``dynamic_batch`` ...).

    Returns:
        The export report.
    """
    # Replicated values and this process's envs: on several hosts the export runs on process 0 alone.
    params, normalizers = parallel.to_host((runner.state.params, runner.state.normalizers))
    observations = {"env_state": jax.tree.map(parallel.local_rows, runner.state.env_state.obs)}
    if rollout_steps > 0:
        net = runner.networks
        if net.is_recurrent:
            policy = make_recurrent_inference_fn(net)(params, normalizers, deterministic=True)
            initial = lambda num_envs: net.init_hidden(num_envs).actor  # noqa: E731
        else:
            policy, initial = make_inference_fn(net)(params, normalizers, deterministic=True), None
        observations["rollout"] = collect_observations(runner.env, policy, jax.random.key(seed), rollout_steps,
                                                       policy_state=initial)
    observations.update(kwargs.pop("observations", None) or {})
    return export_policy(runner.networks, params, normalizers, out_dir, env=runner.env, observations=observations,
                         seed=seed, **kwargs)
