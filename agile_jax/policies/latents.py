"""The encoder latent of a teacher policy file, for TPPO's latent distillation.

st_rl distils the latent of a teacher's encoder of one observation component into the student's encoder of
another (``distill_latent_obs_component_mapping``). Here a policy's encoder is its state estimator (st_rl's
``EstimatorPPO``, :mod:`agile_jax.networks.estimator`): a policy exported by this package with an estimator
computes ``estimate = estimator(x[:, columns])`` on its normalised input inside ``policy.onnx``, and that
estimate is its latent of the observation groups the estimator reads. :func:`onnx_estimator_latent` reads the
estimate out of the graph (the output of the estimator's last layer, ``estimator.<k>.bias``) and the groups
from the graph's ``Gather`` of ``estimator_columns`` and the ``obs_groups`` the file records.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable

import jax
import numpy as np

from agile_jax.policies.loaded import from_env_layout
from agile_jax.types import Array


def _estimator_output(graph) -> str:
    """Name of the tensor the estimator's last layer writes (``ValueError`` when the graph has no estimator)."""
    layers = [int(m.group(1)) for t in graph.initializer if (m := re.fullmatch(r"estimator\.(\d+)\.bias", t.name))]
    if not layers:
        raise ValueError("has no state estimator, so no latent to distil")
    bias = f"estimator.{max(layers)}.bias"
    return next(node.output[0] for node in graph.node if node.op_type == "Add" and bias in node.input)


def _estimator_groups(graph, metadata: dict) -> tuple[str, ...]:
    """Observation groups whose every column the estimator reads (all groups when it reads every column)."""
    from onnx import numpy_helper

    network = json.loads(metadata.get("network", "{}"))
    groups, dims = list(network.get("obs_groups", [])), [int(d) for d in network.get("obs_group_dims", [])]
    consts = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    gathers = [n.input[1] for n in graph.node if n.op_type == "Gather" and n.input[1].startswith("estimator_columns")]
    columns = set(consts[gathers[0]].tolist()) if gathers else set(range(sum(dims)))
    starts = np.cumsum([0, *dims])
    return tuple(g for g, a, b in zip(groups, starts[:-1], starts[1:]) if set(range(a, b)) <= columns)


def onnx_estimator_latent(path: str) -> tuple[Callable[[Array], Array], tuple[str, ...]]:
    """``(latent, groups)`` of an ONNX policy exported with a state estimator.

    Args:
        path: the ``policy.onnx`` file.

    Returns:
        ``latent(x [n, D]) -> [n, K]`` on the env-layout input the policy takes, and the observation groups the
        estimator reads.

    Raises:
        ValueError: the file is not such a policy (the message says why).
    """
    import onnx
    from onnx import TensorProto, helper

    from agile_jax.export.onnx_import import OnnxPolicy

    model = onnx.load_model(path)
    try:
        output = _estimator_output(model.graph)
    except (StopIteration, ValueError):
        raise ValueError(f"the teacher '{path}' has no state estimator, so it has no latent to distil; export a "
                         "teacher trained with algorithm.estimator_cfg") from None
    groups = _estimator_groups(model.graph, {p.key: p.value for p in model.metadata_props})  # (feed-forward only)
    model.graph.output.append(helper.make_tensor_value_info(output, TensorProto.FLOAT, None))
    policy = OnnxPolicy(model)
    row = jax.vmap(lambda x: policy.apply(x[None])[-1][0])
    apply = from_env_layout(lambda x, state: (row(x), state), policy.input_index())
    return (lambda x: apply(x, ())[0]), groups
