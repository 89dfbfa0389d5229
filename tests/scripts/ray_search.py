"""A Ray Tune search over TCE's alpha with ``SquareLossTrainer.hyperparameter_search(backend="ray")`` on a local Ray
of 2 CPUs; writes each trial's alpha, last result and recorded loss to ``OUT_DIR/trials.json``.

Run in its own process: Ray pickles the Trainer for its workers, which a process that has already run another
search in-process may no longer allow (seen with the stock Trainer after an optuna search).

    python ray_search.py OUT_DIR SST2_TSV MODEL_DIR
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

here = Path(__file__).parent
sys.path.insert(0, str(here))
import ray  # noqa: E402
import search_data  # noqa: E402
from ray import tune  # noqa: E402


def main(out_dir: str, tsv: str, model_dir: str) -> None:
    out = Path(out_dir)
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=False,
        runtime_env={"env_vars": {"PYTHONPATH": str(here), "OMP_NUM_THREADS": "1"}},
    )
    try:
        data = search_data.sst2(tsv, model_dir)
        trainer = search_data.trainer(out / "search", data, loss_type="tce")
        best = trainer.hyperparameter_search(
            hp_space=lambda _: {"tce_alpha": tune.grid_search([0.5, 3.0])},
            backend="ray",
            n_trials=1,
            direction="minimize",
            resources_per_trial={"cpu": 1},
            storage_path=str(out / "ray"),
            name="alpha",
        )
    finally:
        ray.shutdown()
    trials = []
    for trial in best.run_summary.trials:
        path = Path(trial.checkpoint.path)
        (config,) = path.glob("checkpoint-*/config.json")
        trials.append(
            {
                "alpha": trial.config["tce_alpha"],
                "result": {k: v for k, v in trial.last_result.items() if isinstance(v, (int, float))},
                "record": json.loads(config.read_text())["hf_squareloss"],
            }
        )
    (out / "trials.json").write_text(json.dumps(trials))
    print(f"best {best.hyperparameters} objective {best.objective}", os.getpid())


if __name__ == "__main__":
    main(*sys.argv[1:4])
