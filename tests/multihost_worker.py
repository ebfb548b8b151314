"""One process of the multi-host test: ``train.py``'s start-up and training, then a dump of its parameters.

``python -m tests.multihost_worker OUT_FILE key=value ...`` (``{process}`` in ``OUT_FILE`` becomes the process
index); the launcher variables (``JAX_COORDINATOR_ADDRESS``,
``JAX_NUM_PROCESSES``, ``JAX_PROCESS_ID``) come from the environment, as from any launcher.
"""

from __future__ import annotations

import sys

import jax
import numpy as np

PARAM_PREFIX = "params"  # keys of the dumped parameter leaves; the other entries describe the run


def main(out_file: str, argv: list[str]) -> None:
    from agile_jax.runtime import parallel
    from experiments import train as train_script

    cfg = train_script.build_config(argv)
    train_script.start_processes(cfg)
    runner = train_script.train(cfg)
    if jax.process_index() == 0:
        train_script.export_final_policy(runner)
    leaves = jax.tree_util.tree_flatten_with_path(parallel.to_host(runner.state.params))[0]
    params = {PARAM_PREFIX + jax.tree_util.keystr(path): leaf for path, leaf in leaves}
    np.savez(out_file.format(process=jax.process_index()), process_count=jax.process_count(),
             device_count=jax.device_count(), log_dir=runner.log_dir, iteration=runner.current_learning_iteration,
             episodes=runner.episodes.count, **params)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
