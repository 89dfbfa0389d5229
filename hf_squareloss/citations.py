"""BibTeX of the papers whose losses this package implements, keyed as the registry refers to them."""

from __future__ import annotations

BIBTEX: dict[str, str] = {
    "hui2021evaluation": """@inproceedings{hui2021evaluation,
  title     = {Evaluation of Neural Architectures Trained with Square Loss vs Cross-Entropy in Classification Tasks},
  author    = {Hui, Like and Belkin, Mikhail},
  booktitle = {International Conference on Learning Representations (ICLR)},
  year      = {2021},
  url       = {https://openreview.net/forum?id=hsFN92eQEla},
  eprint    = {2006.07322},
  archivePrefix = {arXiv}
}""",
    "martinez2018taming": """@inproceedings{martinez2018taming,
  title     = {Taming the Cross Entropy Loss},
  author    = {Martinez, Manuel and Stiefelhagen, Rainer},
  booktitle = {Pattern Recognition. GCPR 2018},
  series    = {Lecture Notes in Computer Science},
  volume    = {11269},
  pages     = {628--637},
  publisher = {Springer},
  year      = {2018},
  doi       = {10.1007/978-3-030-12939-2_43},
  eprint    = {1810.05075},
  archivePrefix = {arXiv}
}""",
}


def bibtex(*keys: str) -> str:
    """The BibTeX entries for ``keys``, in order, separated by blank lines."""
    unknown = [k for k in keys if k not in BIBTEX]
    if unknown:
        raise KeyError(f"no BibTeX for {unknown}; known: {sorted(BIBTEX)}")
    return "\n\n".join(BIBTEX[k] for k in dict.fromkeys(keys))
