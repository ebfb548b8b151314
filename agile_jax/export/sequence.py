"""Step-by-step parity of recurrent exports.

A recurrent policy is checked on observation *sequences*: rows are fed one step at a time (batch 1), the
state carried from step to step and cleared where an episode starts (every ``reset_every`` rows), through
JAX, onnxruntime (``h_in`` / ``c_in`` fed back from ``h_out`` / ``c_out``, zeros at a reset) and TorchScript
(internal state, ``reset()`` at a reset).
"""

from __future__ import annotations

from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from agile_jax.networks.recurrent import make_recurrent_inference_fn

RESET_EVERY = 10


def episode_starts(num_rows: int, reset_every: int = RESET_EVERY) -> np.ndarray:
    """``[M]`` flags: an episode starts at row 0 and every ``reset_every`` rows."""
    return np.arange(num_rows) % reset_every == 0


def jax_actions(networks, params, normalizers: Mapping, obs: Mapping[str, np.ndarray],
                starts: np.ndarray) -> np.ndarray:
    """Deterministic actions ``[M, A]`` of the JAX policy stepping through ``obs`` ``{group: [M, ...]}``."""
    policy = make_recurrent_inference_fn(networks)(params, normalizers, deterministic=True)

    @jax.jit
    def run(obs, starts):
        def step(hidden, inputs):
            row, start = inputs
            hidden = jax.tree.map(lambda x: jnp.where(start, jnp.zeros_like(x), x), hidden)
            actions, hidden = policy(jax.tree.map(lambda x: x[None], row), hidden)
            return hidden, actions[0]

        return jax.lax.scan(step, networks.init_hidden(1).actor, (obs, starts))[1]

    return np.asarray(run(dict(obs), jnp.asarray(starts)))


def run_onnx_sequence(path: str, obs: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Actions ``[M, A]`` of a recurrent ONNX policy stepping through ``obs`` ``[M, D]`` (batch 1)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    inputs = session.get_inputs()
    shapes = [[d if isinstance(d, int) else 1 for d in i.shape] for i in inputs[1:]]
    states, out = [], []
    for row, start in zip(np.asarray(obs, np.float32), starts):
        if start:
            states = [np.zeros(s, np.float32) for s in shapes]
        results = session.run(None, {inputs[0].name: row[None], **{i.name: s for i, s in zip(inputs[1:], states)}})
        out.append(results[0][0])
        states = results[1:]
    return np.stack(out)


def run_torchscript_sequence(path: str, obs: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Actions ``[M, A]`` of a recurrent TorchScript policy stepping through ``obs`` ``[M, D]`` (batch 1)."""
    from agile_jax.export.torchscript import require_torch

    torch = require_torch()
    module = torch.jit.load(path, map_location="cpu").eval()
    out = []
    with torch.no_grad():
        for row, start in zip(np.asarray(obs, np.float32), starts):
            if start:
                module.reset()
            out.append(module(torch.from_numpy(row[None].copy())).numpy()[0])
    return np.stack(out)


SEQUENCE_RUNNERS = {"onnx": run_onnx_sequence, "torchscript": run_torchscript_sequence}
