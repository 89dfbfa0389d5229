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
    "hui2023cut": """@inproceedings{hui2023cut,
  title     = {Cut your Losses with Squentropy},
  author    = {Hui, Like and Belkin, Mikhail and Wright, Stephen},
  booktitle = {Proceedings of the 40th International Conference on Machine Learning (ICML)},
  series    = {Proceedings of Machine Learning Research},
  volume    = {202},
  pages     = {14114--14131},
  year      = {2023},
  eprint    = {2302.03952},
  archivePrefix = {arXiv}
}""",
    "zhang2018generalized": """@inproceedings{zhang2018generalized,
  title     = {Generalized Cross Entropy Loss for Training Deep Neural Networks with Noisy Labels},
  author    = {Zhang, Zhilu and Sabuncu, Mert R.},
  booktitle = {Advances in Neural Information Processing Systems (NeurIPS)},
  volume    = {31},
  year      = {2018},
  eprint    = {1805.07836},
  archivePrefix = {arXiv}
}""",
    "wang2019symmetric": """@inproceedings{wang2019symmetric,
  title     = {Symmetric Cross Entropy for Robust Learning with Noisy Labels},
  author    = {Wang, Yisen and Ma, Xingjun and Chen, Zaiyi and Luo, Yuan and Yi, Jinfeng and Bailey, James},
  booktitle = {IEEE/CVF International Conference on Computer Vision (ICCV)},
  year      = {2019},
  eprint    = {1908.06112},
  archivePrefix = {arXiv}
}""",
    "ma2020normalized": """@inproceedings{ma2020normalized,
  title     = {Normalized Loss Functions for Deep Learning with Noisy Labels},
  author    = {Ma, Xingjun and Huang, Hanxun and Wang, Yisen and Romano, Simone and Erfani, Sarah and Bailey, James},
  booktitle = {Proceedings of the 37th International Conference on Machine Learning (ICML)},
  series    = {Proceedings of Machine Learning Research},
  volume    = {119},
  year      = {2020},
  eprint    = {2006.13554},
  archivePrefix = {arXiv}
}""",
    "lin2017focal": """@inproceedings{lin2017focal,
  title     = {Focal Loss for Dense Object Detection},
  author    = {Lin, Tsung-Yi and Goyal, Priya and Girshick, Ross and He, Kaiming and Doll{\\'a}r, Piotr},
  booktitle = {IEEE International Conference on Computer Vision (ICCV)},
  pages     = {2980--2988},
  year      = {2017},
  eprint    = {1708.02002},
  archivePrefix = {arXiv}
}""",
}


def bibtex(*keys: str) -> str:
    """The BibTeX entries for ``keys``, in order, separated by blank lines."""
    unknown = [k for k in keys if k not in BIBTEX]
    if unknown:
        raise KeyError(f"no BibTeX for {unknown}; known: {sorted(BIBTEX)}")
    return "\n\n".join(BIBTEX[k] for k in dict.fromkeys(keys))
