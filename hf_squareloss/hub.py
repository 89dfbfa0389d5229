"""Publishing a run or a sweep folder to the Hugging Face Hub.

The push never touches the local folder: when the Hub cannot be reached, or no token is available, the folder stays
as it was and the error says how to push it later (``hf-squareloss push <folder> --repo-id <user/name>``).
Checkpoints, lock files and the trainer's pickled arguments are not uploaded.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

__all__ = ["DEFAULT_IGNORE", "HubPushError", "push_folder"]

DEFAULT_IGNORE: tuple[str, ...] = (
    "checkpoint-*",
    "checkpoint-*/**",
    "*.lock",
    ".*",
    "*.tmp",
    "training_args.bin",
    "**/training_args.bin",
)


class HubPushError(RuntimeError):
    """The folder could not be pushed; nothing local was changed."""


def _retry_hint(folder: Path, repo_id: str) -> str:
    return (
        f"Nothing local was changed: everything is in {folder}. Push it later with "
        f"`hf-squareloss push {folder} --repo-id {repo_id}`."
    )


def push_folder(
    folder: str | os.PathLike,
    repo_id: str,
    *,
    token: str | None = None,
    private: bool | None = None,
    commit_message: str | None = None,
    ignore_patterns: Sequence[str] = DEFAULT_IGNORE,
    require_card: bool = True,
) -> str:
    """Create ``repo_id`` if needed and upload ``folder`` to it; return the commit URL.

    ``repo_id`` is ``user-or-org/name``, or ``name`` alone for the token owner's namespace.

    ``token`` defaults to the one ``huggingface_hub`` finds (``HF_TOKEN``, ``hf auth login``). With
    ``require_card`` the folder must hold a ``README.md`` (write it first with ``hf-squareloss card``).
    Raises :class:`HubPushError` with a message saying what to do when the token is missing, the Hub is
    unreachable or offline mode is on, or the Hub refuses the upload.
    """
    from huggingface_hub import HfApi, constants, get_token
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    folder = Path(folder)
    if not folder.is_dir():
        raise HubPushError(f"{folder} is not a folder")
    if require_card and not (folder / "README.md").is_file():
        raise HubPushError(
            f"{folder} has no README.md model card: write it with `hf-squareloss card {folder}`"
        )
    if repo_id.count("/") > 1 or not all(repo_id.split("/")):
        raise HubPushError(f"repo id must look like 'user-or-org/name' or 'name', got {repo_id!r}")
    token = token or get_token()
    if constants.HF_HUB_OFFLINE:
        raise HubPushError(
            "HF_HUB_OFFLINE is set: the Hub is not contacted. Unset it to push. "
            + _retry_hint(folder, repo_id)
        )
    if not token:
        raise HubPushError(
            "no Hugging Face token: pass --hub_token / --token, set HF_TOKEN, or run "
            "`hf auth login`. " + _retry_hint(folder, repo_id)
        )
    api = HfApi(token=token)
    try:
        if "/" not in repo_id:  # the token's own namespace, as the Trainer does
            repo_id = f"{api.whoami()['name']}/{repo_id}"
        api.create_repo(repo_id, private=private, exist_ok=True)
        info = api.upload_folder(
            folder_path=str(folder),
            repo_id=repo_id,
            commit_message=commit_message or f"Upload {folder.name} with hf-squareloss",
            ignore_patterns=list(ignore_patterns),
        )
    except OfflineModeIsEnabled as err:
        raise HubPushError(f"offline mode is on ({err}). " + _retry_hint(folder, repo_id)) from err
    except HfHubHTTPError as err:
        status = getattr(getattr(err, "response", None), "status_code", None)
        what = {
            401: "the token was refused (401)",
            403: "the token may not write to this repository (403)",
        }.get(status, f"the Hub refused the upload ({status or 'no status'})")
        raise HubPushError(f"{what}: {err}. " + _retry_hint(folder, repo_id)) from err
    except (
        OSError,
        ConnectionError,
    ) as err:  # DNS, refused connection, timeouts (httpx errors derive from them)
        raise HubPushError(
            f"the Hub at {constants.ENDPOINT} is unreachable ({type(err).__name__}: {err}). "
            + _retry_hint(folder, repo_id)
        ) from err
    except Exception as err:
        # httpx transport errors are not OSErrors; report them the same way
        if type(err).__module__.startswith(("httpx", "httpcore", "requests", "urllib3")):
            raise HubPushError(
                f"the Hub at {constants.ENDPOINT} is unreachable ({type(err).__name__}: {err}). "
                + _retry_hint(folder, repo_id)
            ) from err
        raise
    return getattr(info, "commit_url", None) or str(info)
