"""TensorBoard logging under RSL-RL 5.x tag names, and the console progress bar."""

from __future__ import annotations

import math
import time

import numpy as np


class Logger:
    """Writes scalars with tensorboardX (``logger="tensorboard"``) or nowhere (``"none"``)."""

    def __init__(self, log_dir: str | None, kind: str = "tensorboard"):
        self.writer = None
        self.start_time = time.time()
        if log_dir and kind == "tensorboard":
            from tensorboardX import SummaryWriter

            self.writer = SummaryWriter(log_dir=log_dir, flush_secs=10)
        elif kind not in ("tensorboard", "none"):
            raise ValueError(f"unknown runner.logger '{kind}', expected 'tensorboard' or 'none'")

    def scalars(self, values: dict[str, float], step: int) -> None:
        if self.writer is None:
            return
        for tag, value in values.items():
            if value is not None and np.isfinite(value):
                self.writer.add_scalar(tag, float(value), step)
        # Wall-time series as RSL-RL writes them.
        elapsed = int(time.time() - self.start_time)
        for tag in ("Train/mean_reward", "Train/mean_episode_length"):
            if values.get(tag) is not None:
                self.writer.add_scalar(f"{tag}/time", float(values[tag]), elapsed)

    def text(self, tag: str, text: str) -> None:
        if self.writer is not None:
            self.writer.add_text(tag, text)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.flush()
            self.writer.close()


def iteration_scalars(metrics: dict, episode_extras: dict, episode_stats: dict[str, float], timing: dict[str, float],
                      samples: int) -> dict[str, float]:
    """Maps one iteration's outputs to RSL-RL 5.x tags.

    ``episode_stats`` holds ``Train/mean_reward`` and ``Train/mean_episode_length`` over the last 100 finished
    episodes, NaN (logged as ``None``: nothing written) before the first episode ends.
    """
    out: dict[str, float] = {}
    for key, value in metrics.items():
        if key == "mean_std":
            out["Policy/mean_std"] = value
        elif key == "mean_step_reward":
            out["Train/mean_step_reward"] = value
        elif "/" in key:  # already a tag (Train/..., Loss/..., Rnd/...)
            out[key] = value
        else:
            out[f"Loss/{key}"] = value
    if episode_extras.get("episode_count", 0) > 0:
        out.update({k: v for k, v in episode_extras.items() if k != "episode_count"})
    for tag, value in episode_stats.items():
        out[tag] = None if math.isnan(value) else value
    out["Perf/total_fps"] = samples / max(timing["iteration"], 1e-9)
    out["Perf/iteration_time"] = timing["iteration"]
    for name in ("collection", "learning"):
        if name in timing:
            out[f"Perf/{name}_time"] = timing[name]
    return out
