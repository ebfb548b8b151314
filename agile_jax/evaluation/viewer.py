"""Watching an evaluation: the passive MuJoCo viewer with a display, else an mp4 from ``mujoco.Renderer``.

Import :mod:`agile_jax.evaluation.sim2mujoco` (or set ``MUJOCO_GL``) before ``mujoco`` is first imported so
that headless rendering picks EGL.
"""

from __future__ import annotations

import os

import mujoco
import numpy as np


def tracking_camera(model: mujoco.MjModel, body: str | int = 1, distance: float = 2.5) -> mujoco.MjvCamera:
    """A camera following ``body`` from the front-left, slightly above."""
    cam = mujoco.MjvCamera()
    cam.type = mujoco.mjtCamera.mjCAMERA_TRACKING
    cam.trackbodyid = model.body(body).id if isinstance(body, str) else int(body)
    cam.distance, cam.azimuth, cam.elevation = distance, 135.0, -15.0
    return cam


class VideoRecorder:
    """Collects frames every ``every`` policy steps and writes them as an mp4.

    Args:
        model: model to render. path: output ``.mp4``. fps: video frame rate.
        every: render one frame per ``every`` calls. height / width: frame size (within the offscreen buffer).
        shadows: render shadows and floor reflections (about 6x slower with software OpenGL).
    """

    def __init__(self, model: mujoco.MjModel, path: str, fps: float, every: int = 1, height: int = 360,
                 width: int = 480, shadows: bool = False):
        height, width = min(height, model.vis.global_.offheight), min(width, model.vis.global_.offwidth)
        self.renderer = mujoco.Renderer(model, height=height, width=width)
        self.camera, self.path, self.fps, self.every = tracking_camera(model), path, fps, every
        self.frames: list[np.ndarray] = []
        self.shadows = shadows

    def __call__(self, data: mujoco.MjData, step: int) -> None:
        if step % self.every == 0:
            self.renderer.update_scene(data, camera=self.camera)
            for flag in (mujoco.mjtRndFlag.mjRND_SHADOW, mujoco.mjtRndFlag.mjRND_REFLECTION):
                self.renderer.scene.flags[flag] = self.shadows
            self.frames.append(self.renderer.render().copy())

    def close(self) -> str | None:
        """Writes the mp4 (nothing without frames) and frees the GL context; returns the path or ``None``."""
        self.renderer.close()
        if not self.frames:
            return None
        import imageio

        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        imageio.mimwrite(self.path, self.frames, fps=self.fps, macro_block_size=1)
        return self.path


class PassiveViewer:
    """``mujoco.viewer.launch_passive`` synced after every policy step, paced to real time."""

    def __init__(self, model: mujoco.MjModel, data_dt: float):

        self.model, self.dt, self.handle, self._t0 = model, data_dt, None, None

    def __call__(self, data: mujoco.MjData, step: int) -> None:
        import time

        import mujoco.viewer

        if self.handle is None:
            self.handle = mujoco.viewer.launch_passive(self.model, data)
            self._t0 = time.perf_counter()
            with self.handle.lock():
                cam = tracking_camera(self.model)
                self.handle.cam.type, self.handle.cam.trackbodyid = cam.type, cam.trackbodyid
        self.handle.sync()
        lag = self._t0 + (step + 1) * self.dt - time.perf_counter()
        if lag > 0:
            time.sleep(lag)

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()
