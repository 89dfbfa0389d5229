"""Reading GLUE's original TSV files, with their traps.

* fields are separated by tabs and never quoted: a ``"`` is part of the sentence (MRPC, QQP), so no CSV quoting
  rules apply;
* a UTF-8 byte-order mark may open the file (MRPC ``dev.tsv``);
* labels may be written as strings (``entailment`` / ``not_entailment`` in QNLI and RTE).

Every problem is reported as a :class:`GlueDataError` naming the file and the line.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from .tasks import GlueTask, TsvLayout

__all__ = ["GlueDataError", "read_glue_tsv"]

_BOM = "\ufeff"


class GlueDataError(ValueError):
    """A GLUE data file is missing or malformed; the message names the file and, when known, the line."""


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """``(line number, text)`` of each line, decoded as UTF-8, without the line ending and the byte-order mark."""
    with open(path, "rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise GlueDataError(f"{path}, line {lineno}: not valid UTF-8 ({err.reason})") from None
            if lineno == 1 and text.startswith(_BOM):
                text = text[len(_BOM) :]
            yield lineno, text.rstrip("\r\n")


def _column_index(layout: TsvLayout, header: list[str] | None, field: str | int, path: Path) -> int:
    if isinstance(field, int):
        return field
    if header is None:
        raise TypeError(f"layout error: named field {field!r} in a file without a header")
    try:
        return header.index(field)
    except ValueError:
        raise GlueDataError(
            f"{path}, line 1: header has no column {field!r} (found {header}); is this the task's original "
            "GLUE file?"
        ) from None


def read_glue_tsv(path: str | os.PathLike, task: GlueTask) -> dict[str, list]:
    """Read one of ``task``'s original TSV files into columns named as on the Hub.

    Returns ``{<text columns>: list[str], "label": list[int | float], "idx": list[int]}`` where ``idx`` is the
    0-based row number in the file (header excluded), as in ``nyu-mll/glue``.
    """
    path = Path(path)
    layout = task.tsv
    if not path.is_file():
        expected = ", ".join(layout.files.values())
        raise GlueDataError(
            f"{path}: no such file; --data_dir must hold {task.folder}'s files in GLUE's original layout ({expected})"
        )
    lines = _lines(path)
    header: list[str] | None = None
    if layout.header:
        first = next(lines, None)
        if first is None:
            raise GlueDataError(f"{path}, line 1: the file is empty (expected a header line)")
        header = first[1].split("\t")
    num_fields = len(header) if header is not None else None
    text_idx = [_column_index(layout, header, f, path) for f in layout.text_fields]
    label_idx = _column_index(layout, header, layout.label_field, path)
    needed = max([*text_idx, label_idx]) + 1

    columns: dict[str, list] = {name: [] for name in task.text_columns}
    labels: list[int | float] = []
    for lineno, line in lines:
        if not line:
            raise GlueDataError(f"{path}, line {lineno}: empty line")
        fields = line.split("\t")
        if num_fields is None:
            num_fields = len(fields)  # no header: the first row fixes the width
            if num_fields < needed:
                raise GlueDataError(
                    f"{path}, line {lineno}: {num_fields} tab-separated field(s), {task.folder} rows need at "
                    f"least {needed}"
                )
        if len(fields) != num_fields:
            raise GlueDataError(
                f"{path}, line {lineno}: {len(fields)} tab-separated field(s), expected {num_fields}"
                + (" as in the header" if header is not None else " as in the first row")
            )
        for name, i in zip(task.text_columns, text_idx, strict=True):
            columns[name].append(fields[i])
        labels.append(_label(fields[label_idx], layout, path, lineno))
    if not labels:
        raise GlueDataError(f"{path}: no data rows")
    columns["label"] = labels
    columns["idx"] = list(range(len(labels)))
    return columns


def _label(raw: str, layout: TsvLayout, path: Path, lineno: int) -> int | float:
    value = raw.strip()
    if layout.label_values is None:
        try:
            return float(value)
        except ValueError:
            raise GlueDataError(f"{path}, line {lineno}: score {raw!r} is not a number") from None
    try:
        return layout.label_values[value]
    except KeyError:
        raise GlueDataError(
            f"{path}, line {lineno}: label {raw!r} is not one of {sorted(layout.label_values)}"
        ) from None
