"""The comparison sweep: a grid of GLUE runs (tasks x losses x label noise x seeds), run resumably and reported.

``hf-squareloss compare`` is the command; :mod:`.grid` plans the runs and documents the sweep folder's layout,
:mod:`.runner` runs them, :mod:`.aggregate` collects the finished runs, :mod:`.report` writes the tables and plots.
"""

from __future__ import annotations

from .grid import RunSpec, SweepSpec

__all__ = ["RunSpec", "SweepSpec"]
