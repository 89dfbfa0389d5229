"""The comparison sweep: a grid of recipe runs (tasks x losses x label noise x seeds), run resumably and reported.

Each task is run by the recipe of its family (GLUE tasks by the GLUE recipe, ``vision:<name>`` by the image recipe),
which the sweep asks the table of task families (:mod:`hf_squareloss.runs.families`) for.

``hf-squareloss compare`` is the command; :mod:`.grid` plans the runs and documents the sweep folder's layout,
:mod:`.runner` runs them (one after another, or as Ray tasks: :mod:`.backends`, :mod:`.ray_backend`; each attempt of
a run: :mod:`.attempt`), :mod:`.aggregate` collects the finished runs, :mod:`.report` writes the tables and plots
(where and when the runs ran: :mod:`.execution`).
"""

from __future__ import annotations

from .grid import RunSpec, SweepSpec

__all__ = ["RunSpec", "SweepSpec"]
