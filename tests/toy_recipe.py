"""The recipe of the toy family (``tests/toy_family.py``) for the sweep tests: a run of a second or so that does, per
loss type, what the environment variable ``TOY_PLAN`` (JSON, ``{"square": "crash_once", ...}``) says:

``ok``          (the default) write ``checkpoint-1/trainer_state.json``, then ``run_summary.json``;
``fail``        fail by itself: exit code 3;
``crash_once``  on its first attempt, write the checkpoint, then kill itself with SIGKILL; on the next one, say that
                it resumes from that checkpoint and finish;
``slow``        print a progress line every 0.2 s for a minute before finishing (a run to interrupt); on SIGINT, say
                ``stopped by SIGINT`` and exit with 130.

It holds the run's lock while it works, as the recipes do.

    python -m toy_recipe --toy_model M --task_name toy:a --output_dir DIR --loss_type L --seed S ...
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path

from hf_squareloss.registry import LossConfig
from hf_squareloss.runs.console import say
from hf_squareloss.runs.folder import last_complete_checkpoint, run_lock, write_json


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    for flag in ("--toy_model", "--task_name", "--output_dir", "--loss_type", "--protocol"):
        parser.add_argument(flag, required=flag != "--protocol")
    parser.add_argument("--seed", type=int, default=0)
    args, _ = parser.parse_known_args(argv)
    return args


def _checkpoint(out: Path) -> None:
    write_json(out / "checkpoint-1" / "trainer_state.json", {"global_step": 1})
    say("epoch 1/2: eval_toy_score=0.5000")


def _summary(args: argparse.Namespace, out: Path) -> None:
    loss = {**LossConfig.resolve(args.loss_type, num_classes=2).to_dict(), "num_classes": 2}
    summary = {
        "task": args.task_name,
        "protocol": {"name": args.protocol or "early_stopping"},
        "loss": loss,
        "seed": args.seed,
        "eval_metrics": {"eval_toy_score": 0.5 + 0.01 * args.seed},
        "history": [],
        "num_train_examples": 7,
        "wall_seconds": 0.1,
    }
    write_json(out / "run_summary.json", summary)
    say("done: eval_toy_score=0.5")


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    out = Path(args.output_dir)
    plan = json.loads(os.environ.get("TOY_PLAN", "{}")).get(args.loss_type, "ok")
    with run_lock(out):
        resumed = last_complete_checkpoint(out)
        if resumed is not None:
            say(f"resuming the interrupted run from {resumed}")
        if plan == "fail":
            print("toy recipe: this run fails by itself", file=sys.stderr)
            return 3
        if plan == "crash_once" and resumed is None:
            _checkpoint(out)
            os.kill(os.getpid(), signal.SIGKILL)
        if plan == "slow":
            try:
                for step in range(300):
                    say(f"still working ({step / 5:.1f}s)")
                    time.sleep(0.2)
            except KeyboardInterrupt:
                say("stopped by SIGINT")
                return 130
        if resumed is None:
            _checkpoint(out)
        _summary(args, out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
