"""Body bounding volumes that follow randomised inertial frames.

MuJoCo C's collision broadphase prunes geom pairs with each body's bounding boxes (``bvh_aabb``), which the
compiler stores in the body's *inertial* frame (``body_ipos``, ``body_iquat``). Domain randomisation moves
that frame (centre-of-mass offsets) but not the geoms, so the stored boxes would drift by the offset and miss
contacts near their edges (a foot sphere 5 mm into the floor, found only a centimetre later). MJX has no such
pruning; these boxes, re-expressed in the new inertial frame, give MuJoCo C the same contacts.
"""

from __future__ import annotations

import mujoco
import numpy as np


def _quat_to_mat(q: np.ndarray) -> np.ndarray:
    """Rotation matrices ``[..., 3, 3]`` of unit quaternions ``[..., 4]`` (w, x, y, z)."""
    w, x, y, z = np.moveaxis(q, -1, 0)
    return np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
        np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
        np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
    ], -2)


def node_bodies(model: mujoco.MjModel) -> np.ndarray:
    """The body of each of the bodies' bounding-volume nodes ``[nbvh_static]`` (the nodes ``bvh_aabb`` starts with)."""
    body = np.full(model.nbvhstatic, -1, np.int64)
    for b in range(model.nbody):
        if model.body_bvhadr[b] >= 0:
            body[model.body_bvhadr[b]:model.body_bvhadr[b] + model.body_bvhnum[b]] = b
    return body


def moved_boxes(model: mujoco.MjModel, body_ipos: np.ndarray, body_iquat: np.ndarray) -> np.ndarray:
    """``bvh_aabb`` ``[n, nbvh, 6]`` (centre, half size) for inertial frames ``body_ipos [n, nbody, 3]``,
    ``body_iquat [n, nbody, 4]``, bounding the same geoms as ``model``'s boxes do in its own frames.

    A box keeps its size when its body's inertial frame only moves; one whose frame also turns becomes the cube
    around its bounding sphere (still a bound, a little looser).
    """
    n = body_ipos.shape[0]
    boxes = np.broadcast_to(np.asarray(model.bvh_aabb, np.float64), (n,) + model.bvh_aabb.shape).copy()
    nodes = np.arange(model.nbvhstatic)
    body = node_bodies(model)
    nodes, body = nodes[body >= 0], body[body >= 0]
    rot = _quat_to_mat(body_iquat[:, body])  # [n, k, 3, 3]
    rot0 = _quat_to_mat(np.asarray(model.body_iquat, np.float64)[body])  # [k, 3, 3]
    # The centre in the body frame: ipos + R c; in the new inertial frame: R'^T (ipos + R c - ipos').
    centre_body = np.asarray(model.body_ipos, np.float64)[body] + np.einsum("kij,kj->ki", rot0, boxes[0, nodes, :3])
    boxes[:, nodes, :3] = np.einsum("nkji,nkj->nki", rot, centre_body[None] - body_ipos[:, body])
    turned = np.any(np.abs(body_iquat[:, body] - np.asarray(model.body_iquat)[body]) > 1e-6, axis=-1)  # [n, k]
    radius = np.linalg.norm(boxes[:, nodes, 3:], axis=-1, keepdims=True)
    boxes[:, nodes, 3:] = np.where(turned[..., None], radius, boxes[:, nodes, 3:])
    return boxes
