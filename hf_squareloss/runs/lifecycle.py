"""What every recipe run does around its work: logging, the lock, the model card and the push.

* :func:`configure_logging`: the log format and levels of ``transformers``' example scripts, per process;
* :func:`end_process_group`: under ``torchrun``, every process waits for the others, then the process group is
  shut down before the interpreter exits;
* :func:`run_once`: refuse to overwrite a finished run, hold the run's lock on the main process while it works,
  then write the model card and push the folder once, when it is complete. The Trainer never pushes during the
  run (its ``push_to_hub`` is turned off), so an unreachable Hub or a missing token never interrupts training, and
  a failed push leaves a complete folder to push later with ``hf-squareloss push``.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .console import say
from .folder import SUMMARY_FILE, is_finished, run_lock

__all__ = ["after_run", "configure_logging", "end_process_group", "run_once"]


def configure_logging(training_args: Any, logger: logging.Logger) -> None:
    """Log to stdout with timestamps, at the process's level (``--log_level`` / ``--log_level_replica``)."""
    import transformers

    logging.basicConfig(
        format="%(asctime)s - %(levelname)s - %(name)s - %(message)s",
        datefmt="%m/%d/%Y %H:%M:%S",
        handlers=[logging.StreamHandler(sys.stdout)],
    )
    log_level = training_args.get_process_log_level()
    logger.setLevel(log_level)
    logging.getLogger("hf_squareloss").setLevel(log_level)
    transformers.utils.logging.set_verbosity(log_level)


def end_process_group() -> None:
    """Wait for every process, then destroy the process group (no-op outside a distributed launch). A gloo group
    left open at interpreter exit can abort a process that has finished its work ("terminate called without an
    active exception", SIGABRT), and ``torchrun`` then reports the launch as failed."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def after_run(
    training_args: Any, output_dir: Path, push: bool, write_card: Callable[[Path], Path]
) -> str | None:
    """Once every file of the run is in ``output_dir``: write its model card, then push the folder when asked.

    Main process only. Returns why the push failed (None when it was not asked for or succeeded); the local folder
    is complete either way.
    """
    from ..hub import HubPushError, push_folder

    try:
        card = write_card(output_dir)
        say(f"model card: {card}")
    except (OSError, ValueError) as err:
        message = f"the model card of {output_dir} could not be written: {err}"
        say(message, error=True)
        return message if push else None
    if not push:
        return None
    repo_id = training_args.hub_model_id or output_dir.resolve().name
    try:
        url = push_folder(
            output_dir, repo_id, token=training_args.hub_token, private=training_args.hub_private_repo
        )
    except HubPushError as err:
        say(f"push to the Hub failed: {err}", error=True)
        return str(err)
    say(f"pushed {output_dir} to {repo_id}: {url}")
    return None


def run_once(
    training_args: Any, work: Callable[[], dict[str, Any]], write_card: Callable[[Path], Path]
) -> dict[str, Any]:
    """Run ``work()`` (the training and evaluation, returning the run's summary) once in ``--output_dir``.

    ``training_args.push_to_hub`` is read, then turned off for the Trainer; the push happens after ``work()``, with
    the card ``write_card(output_dir)`` writes. A failed push leaves ``push_error`` in the returned summary.
    """
    push = bool(training_args.push_to_hub)
    training_args.push_to_hub = False
    output_dir = Path(training_args.output_dir)
    if is_finished(output_dir):
        raise ValueError(
            f"{output_dir} holds a finished run ({SUMMARY_FILE}); finished runs are never overwritten: choose "
            "another --output_dir, or delete that folder to redo the run"
        )
    if training_args.process_index != 0:
        return work()
    with run_lock(output_dir):
        summary = work()
    # after the lock is released: the folder is finished, and pushing it may take a while
    error = after_run(training_args, output_dir, push, write_card)
    return summary if error is None else {**summary, "push_error": error}
