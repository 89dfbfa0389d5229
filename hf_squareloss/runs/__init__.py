"""What every recipe run shares, whatever its task family: one run runtime for GLUE, images and the next family.

* :mod:`.skeleton`: the steps of a run (parse -> resume -> prepare -> train -> save -> evaluate -> predict ->
  summary) and :class:`~.skeleton.RecipeRun`, whose hooks a task package fills;
* :mod:`.arguments`: the label-noise and protocol arguments, and how a recipe reads its command line;
* :mod:`.protocol`: the papers' protocols (``early_stopping``, ``same_epochs``, ``fixed_epochs``);
* :mod:`.folder`: the files of a run folder, its lock, its checkpoints; :mod:`.records`: ``run_args.json``,
  ``run_summary.json`` and the check that a resumed run keeps its settings;
* :mod:`.callbacks` and :mod:`.console`: stopping at an epoch, the progress lines;
* :mod:`.lifecycle`: logging, the run's lock, then its model card and push;
* :mod:`.families`: the table of task families, which the sweep, its reports and ``hf-squareloss card`` ask.

Nothing here imports a task package (:mod:`hf_squareloss.glue`, :mod:`hf_squareloss.vision`); they import this.
Importing the package itself imports neither ``transformers`` nor any of its modules.
"""
