"""Output units of the ASR recipes: characters, phones or SentencePiece pieces, with fixed special indices.

Every tokenizer here reserves ``0`` for the CTC blank (also the padding value of SpeechBrain's batches, which the
Transformer decoder treats as padding), ``1`` for ``<bos>`` and ``2`` for ``<eos>``; the units follow. So a model
over the 39 folded TIMIT phones has ``39 + 3 = 42`` outputs, as in Hui & Belkin's setting.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Protocol

__all__ = [
    "BLANK_INDEX",
    "BOS_INDEX",
    "EOS_INDEX",
    "NUM_SPECIALS",
    "WORD_SEPARATOR",
    "SentencePieceTokenizer",
    "Tokenizer",
    "UnitTokenizer",
]

BLANK_INDEX = 0
BOS_INDEX = 1
EOS_INDEX = 2
NUM_SPECIALS = 3
WORD_SEPARATOR = "|"
"""The character unit that stands for a space between words."""


class Tokenizer(Protocol):
    """What the recipes need from a tokenizer."""

    num_classes: int

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: Sequence[int]) -> str: ...


class UnitTokenizer:
    """A fixed inventory of units: characters (spaces become ``|``) or whitespace-separated symbols (phones).

    Args:
        units: the units in index order (index ``3 + position``).
        kind: ``"char"`` (a transcript is a string of characters) or ``"symbol"`` (whitespace-separated units).
    """

    def __init__(self, units: Sequence[str], kind: str) -> None:
        if kind not in ("char", "symbol"):
            raise ValueError(f"UnitTokenizer: kind must be 'char' or 'symbol', got {kind!r}")
        units = list(units)
        if len(set(units)) != len(units):
            duplicated = sorted({u for u in units if units.count(u) > 1})
            raise ValueError(f"UnitTokenizer: duplicated units {duplicated}")
        if not units:
            raise ValueError("UnitTokenizer: empty unit inventory")
        for unit in units:
            if not unit or any(ch.isspace() for ch in unit) or (kind == "char" and len(unit) != 1):
                raise ValueError(f"UnitTokenizer: bad {kind} unit {unit!r}")
        self.kind = kind
        self.units = units
        self.index = {unit: NUM_SPECIALS + i for i, unit in enumerate(units)}
        self.num_classes = NUM_SPECIALS + len(units)

    @classmethod
    def characters(cls, alphabet: str) -> UnitTokenizer:
        """Characters of ``alphabet`` plus the word separator ``|``."""
        return cls([WORD_SEPARATOR, *dict.fromkeys(alphabet)], "char")

    def split(self, text: str) -> list[str]:
        if self.kind == "symbol":
            return text.split()
        return list(WORD_SEPARATOR.join(text.split()))

    def encode(self, text: str) -> list[int]:
        """Unit indices of ``text``; ``ValueError`` naming the units outside the inventory."""
        pieces = self.split(text)
        unknown = sorted({p for p in pieces if p not in self.index})
        if unknown:
            raise ValueError(
                f"units {unknown} of {text!r} are not in the inventory ({len(self.units)} units)"
            )
        return [self.index[p] for p in pieces]

    def decode(self, ids: Sequence[int]) -> str:
        """Text of ``ids``; special indices (blank, bos, eos) are dropped."""
        units = [self.units[i - NUM_SPECIALS] for i in ids if NUM_SPECIALS <= i < self.num_classes]
        if self.kind == "symbol":
            return " ".join(units)
        return " ".join(word for word in "".join(units).split(WORD_SEPARATOR) if word)

    def save(self, path: str | Path) -> None:
        """Write the inventory, one unit a line (``kind`` on the first line)."""
        Path(path).write_text("\n".join([f"#kind {self.kind}", *self.units]) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> UnitTokenizer:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
        if not lines or not lines[0].startswith("#kind "):
            raise ValueError(f"{path}:1: not a unit inventory (expected '#kind char|symbol')")
        return cls([line for line in lines[1:] if line], lines[0].split()[1])


class SentencePieceTokenizer:
    """A SentencePiece model whose ids 0, 1, 2 are blank (SentencePiece's pad), ``<bos>`` and ``<eos>``.

    ``num_classes`` is the vocabulary size, specials and ``<unk>`` (id 3) included.
    """

    def __init__(self, model_file: str | Path) -> None:
        import sentencepiece as spm

        self.model_file = Path(model_file)
        if not self.model_file.is_file():
            raise FileNotFoundError(f"SentencePiece model {self.model_file} not found")
        self.processor = spm.SentencePieceProcessor(model_file=str(self.model_file))
        specials = (self.processor.pad_id(), self.processor.bos_id(), self.processor.eos_id())
        if specials != (BLANK_INDEX, BOS_INDEX, EOS_INDEX):
            raise ValueError(
                f"{self.model_file}: pad/bos/eos ids are {specials}, expected ({BLANK_INDEX}, {BOS_INDEX}, "
                f"{EOS_INDEX}); train it with SentencePieceTokenizer.train"
            )
        self.num_classes = int(self.processor.get_piece_size())

    @classmethod
    def train(
        cls,
        texts: Iterable[str],
        model_prefix: str | Path,
        *,
        vocab_size: int,
        model_type: str = "unigram",
        character_coverage: float = 1.0,
        max_sentences: int = 2_000_000,
        seed_sentencepiece_size: int = 1_000_000,
    ) -> SentencePieceTokenizer:
        """Train a model on ``texts`` (locally; nothing is downloaded) and return it.

        Writes ``<model_prefix>.model`` and ``.vocab``, and the training text to ``<model_prefix>.txt``.
        """
        import sentencepiece as spm

        prefix = Path(model_prefix)
        prefix.parent.mkdir(parents=True, exist_ok=True)
        corpus = prefix.with_suffix(".txt")
        count = 0
        with corpus.open("w", encoding="utf-8") as handle:
            for text in texts:
                if text.strip():
                    handle.write(text.strip() + "\n")
                    count += 1
        if count == 0:
            raise ValueError("SentencePieceTokenizer.train: no training text")
        spm.SentencePieceTrainer.train(
            input=str(corpus),
            model_prefix=str(prefix),
            vocab_size=int(vocab_size),
            model_type=model_type,
            character_coverage=character_coverage,
            pad_id=BLANK_INDEX,
            pad_piece="<blank>",
            bos_id=BOS_INDEX,
            eos_id=EOS_INDEX,
            unk_id=NUM_SPECIALS,
            input_sentence_size=max_sentences,
            shuffle_input_sentence=True,
            seed_sentencepiece_size=seed_sentencepiece_size,
            num_threads=1,
            minloglevel=2,
        )
        return cls(prefix.with_suffix(".model"))

    def encode(self, text: str) -> list[int]:
        return list(self.processor.encode(text, out_type=int))

    def decode(self, ids: Sequence[int]) -> str:
        kept = [int(i) for i in ids if int(i) >= NUM_SPECIALS]
        return str(self.processor.decode(kept))
