"""The former name of :mod:`agile_jax.runtime.platform`, kept for scripts that import ``agile_jax.platform``."""

import sys

from agile_jax.runtime import platform as _platform

sys.modules[__name__] = _platform
