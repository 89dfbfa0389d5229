#!/usr/bin/env python
"""Train an image classifier with the square loss, the Tamed Cross Entropy, cross-entropy or any loss of the registry.

A thin entry point: the recipe lives in ``hf_squareloss.vision.run`` so that ``hf-squareloss compare`` runs the very
same code. See ``recipes/vision/README.md`` and ``python recipes/vision/run_image_classification.py -h``.
"""

import sys

from hf_squareloss.vision.run import main

if __name__ == "__main__":
    sys.exit(1 if "push_error" in main() else 0)
