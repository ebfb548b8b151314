"""A command starts quietly: no MJX notice about an absent Warp, no XLA line about the compilation cache."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from agile_jax.runtime import platform

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOISE = ("Failed to import", "cpu_aot_loader", "SIGILL", "Traceback", "W0", "W1", "E0", "E1")


def _run(args: list[str], cache_dir) -> str:
    """stdout + stderr of ``python <args>`` with its own compilation cache and JAX's default log level."""
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}  # as a user's shell has it
    env["AGILE_JAX_CACHE_DIR"] = str(cache_dir)
    result = subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout + result.stderr


def _noise(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith(NOISE) or "SIGILL" in line]


def test_mjx_import_through_envs_is_quiet():
    import mujoco.mjx.warp as probe

    output = _run(["-c", "import envs.tasks.cartpole, mujoco.mjx.warp as w; print(w.WARP_INSTALLED)"], "/tmp")
    assert output.strip() == str(probe.WARP_INSTALLED)


@pytest.mark.slow  # two training commands, one of them compiling from scratch: about 50 s
def test_train_twice_with_the_same_cache_is_quiet(tmp_path):
    args = ["experiments/train.py", "config=point_mass", "num_envs=16", "max_iterations=1", "num_steps_per_env=4",
            f"log_root={tmp_path / 'logs'}", "progress_bar=false"]
    cold = _run(args, tmp_path / "cache")
    warm = _run(args, tmp_path / "cache")  # every program now comes from the cache
    assert os.listdir(tmp_path / "cache") == [platform.cpu_tag()]
    assert os.listdir(tmp_path / "cache" / platform.cpu_tag())
    assert _noise(cold) == [] and _noise(warm) == [], (cold, warm)


def test_cache_is_kept_per_cpu(tmp_path):
    path = platform.enable_compilation_cache(str(tmp_path))
    assert path == os.path.join(str(tmp_path), platform.cpu_tag()) and os.path.isdir(path)
    assert platform.cpu_tag() == platform.cpu_tag() and platform.cpu_tag().startswith("cpu-")


PROGRAM = """
import jax, jax.numpy as jnp
from agile_jax.runtime import platform
platform.enable_compilation_cache({cache!r})
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
print(float(jax.jit(lambda x: jnp.sin(x) * 2.0 + 1.0)(jnp.ones(3))[0]))
"""


def _forge_features(cache_dir, old: str, new: str) -> None:
    """Rewrites the compile-time CPU feature list of every cached program (same length: the entry stays valid)."""
    from jax._src import compilation_cache

    (folder,) = [os.path.join(cache_dir, name) for name in os.listdir(cache_dir)]
    for name in os.listdir(folder):
        path = os.path.join(folder, name)
        with open(path, "rb") as f:
            raw = compilation_cache.decompress_executable(f.read())
        assert old.encode() in raw
        with open(path, "wb") as f:
            f.write(compilation_cache.compress_executable(raw.replace(old.encode(), new.encode())))


@pytest.mark.parametrize("compiled_with, forged, shown", [("+xsaveopt,+xsaves", "+prefer-no-gather", False),
                                                         ("+xsaveopt", "+avx512bw", True)])
def test_xla_feature_warning_shows_only_for_a_real_instruction_set(tmp_path, compiled_with, forged, shown):
    """A cached program whose feature list names an LLVM tuning flag loads quietly; one that names an instruction
    set this CPU lacks (a cache from another CPU: a real SIGILL risk) keeps XLA's warning."""
    flags = open("/proc/cpuinfo").read() if os.path.exists("/proc/cpuinfo") else ""
    if " xsaves" not in flags or " avx512bw" in flags:
        pytest.skip("needs an x86 CPU with XSAVES and without AVX-512")
    program = ["-c", PROGRAM.format(cache=str(tmp_path))]
    _run(program, tmp_path)
    _forge_features(tmp_path, compiled_with, forged)
    entries = os.listdir(tmp_path / platform.cpu_tag())
    warm = _run(program, tmp_path)
    assert os.listdir(tmp_path / platform.cpu_tag()) == entries  # loaded, not compiled again
    assert ("SIGILL" in warm) == shown, warm
    assert warm.startswith("2.68") and "Assume version compatibility" not in warm  # the program ran, from the cache
