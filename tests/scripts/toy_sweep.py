"""A sweep of the toy family (``tests/toy_family.py``, its recipe ``tests/toy_recipe.py``) in a process of its own,
on either backend: it registers the family, runs the grid with ``run_sweep``, writes the report and prints the
outcome as one line ``OUTCOME {json}``; exit code 130 when the sweep was interrupted, as ``compare``'s.

    python toy_sweep.py ROOT --losses ce square --backend ray --max_retries 2 [--sigterm_at_fork]

``TOY_PLAN`` (see the recipe) says what each loss's run does. ``--sigterm_at_fork`` sends this process a SIGTERM
from inside the at-fork hook of the first run's start, where an exception raised by a signal handler is dropped.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TESTS))
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")]))

from hf_squareloss.compare.backends import BackendOptions  # noqa: E402
from hf_squareloss.compare.grid import SweepSpec  # noqa: E402
from hf_squareloss.compare.report import write_report  # noqa: E402
from hf_squareloss.compare.runner import run_sweep  # noqa: E402
from hf_squareloss.runs.families import register_family  # noqa: E402


def _sigterm_at_first_fork() -> None:
    armed = [True]

    def after_fork_in_parent() -> None:
        if armed[0]:
            armed[0] = False
            os.kill(os.getpid(), signal.SIGTERM)
            sum(range(1000))  # bytecodes for the handler to run on, inside the hook

    os.register_at_fork(after_in_parent=after_fork_in_parent)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("root")
    parser.add_argument("--losses", nargs="+", default=["ce", "square"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--backend", default="sequential")
    parser.add_argument("--max_retries", type=int, default=2)
    parser.add_argument("--num_cpus", type=int, default=None)
    parser.add_argument("--sigterm_at_fork", action="store_true")
    ns = parser.parse_args()
    register_family("toy", "toy:", "toy_family")
    spec = SweepSpec(
        model_name_or_path="m", tasks=["toy:a"], losses=ns.losses, seeds=ns.seeds, noise_rates=[0.0]
    )
    options = BackendOptions(name=ns.backend, max_retries=ns.max_retries, num_cpus=ns.num_cpus)
    if ns.sigterm_at_fork:
        _sigterm_at_first_fork()
    try:
        outcome = run_sweep(spec, ns.root, backend=options, command="toy sweep")
    except KeyboardInterrupt:
        print("OUTCOME " + json.dumps({"interrupted": True}), flush=True)
        return 130
    write_report(ns.root, spec=spec)
    fields = ("finished", "kept", "failed", "skipped", "retried")
    print("OUTCOME " + json.dumps({k: getattr(outcome, k) for k in fields}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
