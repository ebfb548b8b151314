"""Shared test set-up: the persistent XLA cache (MJX programs compile slowly on CPU)."""

import os

from agile_jax import platform

platform.enable_compilation_cache(os.environ.get("AGILE_JAX_TEST_CACHE_DIR"))
