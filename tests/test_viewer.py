"""The evaluation viewer: its camera tracks the robot's trunk from the mp4s' distance, and playback is real time."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import mujoco
import pytest

from agile_jax.evaluation import viewer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCENE = """<mujoco><worldbody><geom type="plane" size="5 5 .1"/><body name="post" pos="1 0 0"><geom size=".1"/></body>
<body name="trunk" pos="0 0 1"><freejoint/><geom size=".2"/><body name="leg"><joint axis="0 1 0"/>
<geom type="capsule" fromto="0 0 0 0 0 -.8" size=".05"/></body></body></worldbody></mujoco>"""

DRIVE = f"""
import json, sys, time
import mujoco
from agile_jax.evaluation.viewer import PassiveViewer
model = mujoco.MjModel.from_xml_string('''{SCENE}''')
model.opt.gravity[:] = 0
data = mujoco.MjData(model)
data.qvel[0] = 2.0  # the trunk slides away at 2 m/s
view = PassiveViewer(model, 0.02)
for k in range(50):
    mujoco.mj_step(model, data)
    view(data, k)
    if k == 0:
        start = time.perf_counter()
        cam = view.handle.cam
        first = dict(type=int(cam.type), body=int(cam.trackbodyid), distance=cam.distance, azimuth=cam.azimuth)
seconds = time.perf_counter() - start
view.close()
print(json.dumps(dict(first, seconds=seconds)))
"""


def test_camera_tracks_the_floating_base_as_the_videos_do():
    model = mujoco.MjModel.from_xml_string(SCENE)
    assert viewer.root_body(model) == model.body("trunk").id  # not body 1 ("post")
    cam = viewer.tracking_camera(model)
    assert cam.type == mujoco.mjtCamera.mjCAMERA_TRACKING and cam.trackbodyid == model.body("trunk").id
    assert cam.distance == 2.5 and cam.elevation < 0


@pytest.fixture
def display():
    """A virtual X display (Xvfb); skipped where Xvfb is not installed."""
    if shutil.which("Xvfb") is None:
        pytest.skip("Xvfb is not installed")
    # -displayfd: Xvfb picks a free display number and writes it to stdout once it accepts connections.
    server = subprocess.Popen(["Xvfb", "-displayfd", "1", "-screen", "0", "640x480x24"], stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True)
    number = server.stdout.readline().strip()
    if not number:
        pytest.skip("Xvfb did not start")
    yield f":{number}"
    server.terminate()
    server.wait(timeout=10)


def test_passive_viewer_tracks_the_trunk_in_real_time(display):
    import json

    env = {**os.environ, "DISPLAY": display, "PYTHONPATH": ROOT}
    env.pop("MUJOCO_GL", None)
    result = subprocess.run([sys.executable, "-c", DRIVE], env=env, capture_output=True, text=True, timeout=120)
    if result.returncode != 0 and "GLFW" in result.stderr:
        pytest.skip(f"no OpenGL window on this display: {result.stderr.strip().splitlines()[-1]}")
    assert result.returncode == 0, result.stderr[-3000:]
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen["type"] == int(mujoco.mjtCamera.mjCAMERA_TRACKING) and seen["body"] == 2  # the trunk
    assert seen["distance"] == pytest.approx(2.5) and seen["azimuth"] == pytest.approx(135.0)
    assert 49 * 0.02 * 0.8 < seen["seconds"] < 49 * 0.02 * 1.5  # 49 policy steps of 20 ms after the first frame
