"""Watching an evaluation: the passive MuJoCo viewer with a display, else an mp4 from ``mujoco.Renderer``.

Import :mod:`agile_jax.evaluation.sim2mujoco` (or set ``MUJOCO_GL``) before ``mujoco`` is first imported so
that headless rendering picks EGL.
"""

from __future__ import annotations

import os
import threading

import mujoco
import numpy as np


def root_body(model: mujoco.MjModel) -> int:
    """The floating base (a humanoid's trunk): the first body with a free joint, else body 1."""
    for body in range(1, model.nbody):
        first = model.body_jntadr[body]
        if model.body_jntnum[body] and model.jnt_type[first] == mujoco.mjtJoint.mjJNT_FREE:
            return body
    return min(1, model.nbody - 1)


def tracking_camera(model: mujoco.MjModel, body: str | int | None = None, distance: float = 2.5) -> mujoco.MjvCamera:
    """A camera following ``body`` (default: :func:`root_body`) from the front-left, slightly above, at
    ``distance`` metres: a whole humanoid in the frame."""
    cam = mujoco.MjvCamera()
    cam.type = mujoco.mjtCamera.mjCAMERA_TRACKING
    cam.trackbodyid = root_body(model) if body is None else model.body(body).id
    cam.distance, cam.azimuth, cam.elevation = distance, 135.0, -15.0
    return cam


def _copy_camera(source: mujoco.MjvCamera, target: mujoco.MjvCamera) -> None:
    target.type, target.trackbodyid = source.type, source.trackbodyid
    target.distance, target.azimuth, target.elevation = source.distance, source.azimuth, source.elevation


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
    """``mujoco.viewer.launch_passive`` synced after every policy step and paced to real time; its camera tracks
    the robot as the mp4s do (drag to move it; Tab / Shift+Tab show the menus). Closing the window lets the
    evaluation finish without it."""

    def __init__(self, model: mujoco.MjModel, data_dt: float):
        self.model, self.dt, self.handle, self._t0 = model, data_dt, None, 0.0
        self._threads: list[threading.Thread] = []

    def __call__(self, data: mujoco.MjData, step: int) -> None:
        import time

        import mujoco.viewer

        if self.handle is None:
            before = set(threading.enumerate())
            self.handle = mujoco.viewer.launch_passive(self.model, data, show_left_ui=False, show_right_ui=False)
            self._threads = [t for t in threading.enumerate() if t not in before]  # the window's thread
            with self.handle.lock():
                _copy_camera(tracking_camera(self.model), self.handle.cam)
            self._t0 = time.perf_counter() - step * self.dt  # step k is shown at t0 + k dt
        if not self.handle.is_running():
            return
        self.handle.sync()
        lag = self._t0 + (step + 1) * self.dt - time.perf_counter()
        if lag > 0:
            time.sleep(lag)

    def close(self, timeout_s: float = 5.0) -> None:
        """Closes the window and waits for its thread to free it (GLFW crashes if the process exits first)."""
        if self.handle is None:
            return
        self.handle.close()
        for thread in self._threads:
            thread.join(timeout_s)
