"""Reference motions for adversarial motion priors: the motion file format and :class:`AMPLoader`."""

from agile_jax.motion.loader import COMPONENTS, AMPLoader, MotionClip, MotionFormatError, load_clips, resolve_file

__all__ = ["COMPONENTS", "AMPLoader", "MotionClip", "MotionFormatError", "load_clips", "resolve_file"]
