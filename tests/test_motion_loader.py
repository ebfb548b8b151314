"""Reference motion files: resampling, features, windows and weights by hand, one-line errors for malformed files,
and the shipped sets (small, regenerated exactly by their script, declared as package data)."""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from agile_jax.motion import AMPLoader, MotionFormatError, load_clips, resolve_file
from agile_jax.motion.loader import DATA_DIR, write_motion_file

JOINTS = (("joint_pos", 1), ("joint_vel", 1))


def _clip(count: int = 11, dt: float = 0.01, **extra) -> dict:
    t = np.arange(count) * dt
    pos = np.stack([np.zeros(count), 2.0 * t], -1)  # joint "b" moves at 2 rad/s
    return {"dt": np.float64(dt), "joint_names": np.array(["a", "b"]), "joint_pos": pos, **extra}


def _write(tmp_path, clips: dict, name: str = "m.npz") -> str:
    path = str(tmp_path / name)
    write_motion_file(path, clips)
    return path


def test_resampling_windows_and_joint_selection_by_hand(tmp_path):
    path = _write(tmp_path, {"": _clip()})  # 11 frames over 0.1 s, no joint_vel: central differences
    loader = AMPLoader([path], 0.02, JOINTS, ("b",), num_frames=2)
    # Frames at 0, 0.02, ..., 0.1 (6); windows of two start at 0 .. 0.08 (5): b = 2t, b' = 2.
    expected = np.array([[[2 * t, 2.0], [2 * (t + 0.02), 2.0]] for t in np.arange(5) * 0.02])
    np.testing.assert_allclose(loader.windows, expected, atol=1e-6)
    assert loader.observation_dim == 4
    # A step that is not a multiple of dt interpolates: frames at 0, 0.015, ..., 0.09 fit three-frame windows.
    three = AMPLoader([path], 0.015, JOINTS, ("b",), num_frames=3)
    assert three.windows.shape == (5, 3, 2)  # starts 0 .. 0.06
    np.testing.assert_allclose(three.windows[-1, :, 0], 2 * np.array([0.06, 0.075, 0.09]), atol=1e-6)


def test_looping_clips_wrap_and_weights_split_over_windows(tmp_path):
    ramp = {"dt": np.float64(0.1), "joint_names": np.array(["b"]), "joint_pos": np.array([[0.0], [1.0], [2.0], [3.0]]),
            "loop": np.bool_(True), "weight": np.float64(3.0)}
    path = _write(tmp_path, {"ramp": ramp, "still": {**_clip(), "joint_pos": np.full((11, 2), 7.0)}})
    loader = AMPLoader([path], 0.05, JOINTS, ("b",), num_frames=2)
    ramp_windows = loader.windows[:8]  # clips are read in name order; the loop has 0.4 / 0.05 = 8 windows
    # The last window runs from t = 0.35 (half way from 3 back to 0: 1.5) to 0.4 = 0 (frame 0 again).
    np.testing.assert_allclose(ramp_windows[-1, :, 0], [1.5, 0.0], atol=1e-6)
    # Looping central differences: frame 0 = (1 - 3) / 0.2 = -10.
    np.testing.assert_allclose(ramp_windows[0, 0, 1], -10.0, atol=1e-5)
    np.testing.assert_allclose(loader.probs[:8].sum(), 0.75, atol=1e-6)  # weight 3 against 1
    samples = np.asarray(loader.sample(jax.random.key(0), 4000)).reshape(-1, 2, 2)
    from_ramp = np.isin(samples[:, 0, 0], ramp_windows[:, 0, 0])
    assert abs(np.mean(from_ramp) - 0.75) < 0.03 and np.all(samples[~from_ramp, :, 0] == 7.0)


def test_projected_gravity_matches_the_environment():
    from agile_jax.motion.loader import _projected_gravity
    from envs.mdp.math import projected_gravity

    q = np.random.default_rng(0).normal(size=(20, 4))
    q /= np.linalg.norm(q, axis=-1, keepdims=True)
    np.testing.assert_allclose(_projected_gravity(q), np.asarray(projected_gravity(jnp.asarray(q))), atol=1e-6)


def test_base_fields_enter_the_features_in_layout_order(tmp_path):
    f = 5
    base = {"base_height": np.full(f, 0.7), "base_quat": np.tile([np.cos(0.25), np.sin(0.25), 0.0, 0.0], (f, 1)),
            "base_lin_vel": np.tile([0.5, 0.0, 0.0], (f, 1)), "base_ang_vel": np.tile([0.0, 0.0, 1.0], (f, 1))}
    path = _write(tmp_path, {"": _clip(f, 0.02, **base)})
    layout = (("joint_pos", 1), ("base_height", 1), ("projected_gravity", 3), ("base_lin_vel", 3),
              ("base_ang_vel", 3))
    frame = AMPLoader([path], 0.02, layout, ("b",), num_frames=1).windows[0, 0]
    # Rolled 0.5 rad about x: gravity in the root frame is (0, -sin 0.5, -cos 0.5).
    np.testing.assert_allclose(frame, [0.0, 0.7, 0.0, -np.sin(0.5), -np.cos(0.5), 0.5, 0, 0, 0, 0, 1], atol=1e-6)


@pytest.mark.parametrize("clip, message", [
    ({"dt": None}, "has no 'dt' field; a clip needs dt, joint_names and joint_pos"),
    ({"dt": np.float64(0.0)}, "dt must be one number > 0"),
    ({"joint_pos": np.zeros((11, 3))}, r"'joint_pos' has shape \[11, 3\], expected \[F, 2\]"),
    ({"joint_vel": np.full((11, 2), np.nan)}, "'joint_vel' holds NaN or inf"),
    ({"base_height": np.zeros(7)}, "one common length"),
    ({"base_quat": np.zeros((11, 4))}, "zero quaternions"),
    ({"weight": np.float64(-1.0)}, "weight must be > 0"),
])
def test_malformed_clips_are_refused_in_one_line(tmp_path, clip, message):
    path = _write(tmp_path, {"": {k: v for k, v in {**_clip(), **clip}.items() if v is not None}})
    with pytest.raises(MotionFormatError, match=message) as err:
        load_clips(path)
    assert path in str(err.value) and "\n" not in str(err.value)


def test_unusable_files_are_refused_in_one_line(tmp_path):
    (tmp_path / "text.npz").write_text("no archive")
    cases = [
        (lambda: load_clips(str(tmp_path / "missing.npz")), r"not found; .* shipped sets \['point_mass_circle', "
                                                            r"'t1_gait'\]"),
        (lambda: load_clips(str(tmp_path / "text.npz")), "not a readable .npz archive"),
        (lambda: AMPLoader([_write(tmp_path, {"": _clip()})], 0.02, JOINTS, ("c",)), r"has no joint \['c'\]"),
        (lambda: AMPLoader([_write(tmp_path, {"": _clip()})], 0.02, (("base_height", 1),), ()),
         "no 'base_height' field, which the AMP observation's 'base_height' needs"),
        (lambda: AMPLoader([_write(tmp_path, {"": _clip(3)})], 0.02, JOINTS, ("b",), num_frames=4),
         "long enough for 4 frames"),
    ]
    for call, message in cases:
        with pytest.raises(MotionFormatError, match=message) as err:
            call()
        assert "\n" not in str(err.value)


def test_shipped_sets_are_small_regenerate_exactly_and_install_with_the_package(tmp_path):
    import tomllib

    from experiments.make_reference_motions import main

    shipped = {name: resolve_file(name) for name in ("t1_gait", "point_mass_circle")}
    assert all(os.path.getsize(p) < 1_000_000 for p in shipped.values())
    for path in main(str(tmp_path)):
        name = os.path.basename(path)[:-4]
        fresh, ours = load_clips(path), load_clips(shipped[name])
        assert [c.name for c in fresh] == [c.name for c in ours]
        for a, b in zip(fresh, ours):
            assert a.joint_names == b.joint_names and a.dt == b.dt and a.loop == b.loop
            for key in a.fields:
                np.testing.assert_array_equal(a.fields[key], b.fields[key])
    with open(os.path.join(os.path.dirname(DATA_DIR), "..", "..", "pyproject.toml"), "rb") as f:
        data = tomllib.load(f)["tool"]["setuptools"]["package-data"]["agile_jax.motion"]
    assert data == ["data/*.npz"]


def test_t1_gait_walks_at_the_documented_speeds():
    speeds = {c.name.split("/")[1]: float(np.mean(c.fields["base_lin_vel"][:, 0])) for c in load_clips("t1_gait")}
    assert speeds == pytest.approx({"stand": 0.0, "step": 0.0, "walk_slow": 0.254, "walk": 0.505,
                                    "walk_back": -0.254}, abs=0.005)
