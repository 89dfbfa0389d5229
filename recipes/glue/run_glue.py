#!/usr/bin/env python
"""Fine-tune a model on a GLUE task with the square loss, the Tamed Cross Entropy or cross-entropy.

A thin entry point: the recipe lives in ``hf_squareloss.glue.run`` so that ``hf-squareloss compare`` runs the very
same code. See ``recipes/glue/README.md`` and ``python recipes/glue/run_glue.py -h``.
"""

import sys

from hf_squareloss.glue.run import main

if __name__ == "__main__":
    sys.exit(1 if "push_error" in main() else 0)
