"""Question text -> token ids, and the vocabularies of the VQA reasoner.

Tokenisation is the original's (section 6.1): lowercase, delete every '?', split on single spaces, drop empty
strings. Punctuation other than '?' stays attached ("cube," and "cube" are different words), exactly as the
original vocabulary has it. Sequences are right-padded with PAD (id 0) to a fixed length, with a boolean pad
mask (True = padding).

The question vocabulary is built deterministically from the training questions and choices: PAD = 0, then
every distinct word in sorted order from 1, then UNK last (for words first seen at evaluation). On CLEVRER's
training questions this reproduces the original ``CLEVRER_vocab.json`` ids 0..81 (+ UNK = 82). The answer
vocabulary is CLEVRER's fixed one (PAD = 0, '0'-'5', colours, shapes, materials, yes/no; 22 ids, sorted as the
original) followed by any other training answer, sorted. Vocabularies are saved with the model
(``vocab.json`` in the run directory and the task state of every checkpoint); the original file format
(``{"q_vocab": ..., "a_vocab": ...}``) loads too.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

PAD = "PAD"
UNK = "UNK"
VOCAB_FORMAT = "cjepa-vqa-vocab"

CLEVRER_COLORS = ("gray", "red", "blue", "green", "brown", "yellow", "cyan", "purple")
CLEVRER_MATERIALS = ("metal", "rubber")
CLEVRER_SHAPES = ("sphere", "cylinder", "cube")
# The 21 answers of CLEVRER's descriptive questions; with PAD first and the rest sorted they get the original ids.
CLEVRER_ANSWERS = tuple(sorted(("0", "1", "2", "3", "4", "5", "yes",
                                "no") + CLEVRER_COLORS + CLEVRER_MATERIALS + CLEVRER_SHAPES))


class VocabError(ValueError):
    """A word or answer is not in the vocabulary, or a vocabulary file is malformed."""


def tokenize(text: str) -> list[str]:
    """The original tokenisation: lowercase, drop '?', split on ' ', drop empty strings."""
    return [w for w in text.lower().replace("?", "").split(" ") if w]


@dataclass
class Vocab:
    words: dict[str, int]  # question/choice word -> id; PAD = 0
    answers: dict[str, int]  # descriptive answer -> class id; PAD = 0

    @property
    def num_words(self) -> int:
        return max(self.words.values()) + 1

    @property
    def num_answers(self) -> int:
        return max(self.answers.values()) + 1

    @property
    def answer_names(self) -> list[str]:
        names = [""] * self.num_answers
        for a, i in self.answers.items():
            names[i] = a
        return names

    # ------------------------------------------------------------------ building and files

    @classmethod
    def build(cls, texts: Iterable[str], answers: Iterable[str]) -> "Vocab":
        """Question vocabulary from every text given (questions and choices), answers = CLEVRER's + extra."""
        seen = sorted({w for t in texts for w in tokenize(t)} - {PAD, UNK})
        words = {PAD: 0, **{w: i + 1 for i, w in enumerate(seen)}}
        words[UNK] = len(words)
        ans = {PAD: 0, **{a: i + 1 for i, a in enumerate(CLEVRER_ANSWERS)}}
        for a in sorted(set(answers) - set(ans)):
            ans[a] = len(ans)
        return cls(words, ans)

    def to_dict(self) -> dict:
        return {"format": VOCAB_FORMAT, "version": 1, "q_vocab": self.words, "a_vocab": self.answers}

    @classmethod
    def from_dict(cls, data: dict, source: str = "vocab") -> "Vocab":
        if not isinstance(data, dict) or "q_vocab" not in data or "a_vocab" not in data:
            raise VocabError(f"{source}: a vocabulary needs 'q_vocab' and 'a_vocab' mappings")
        words = {str(k): int(v) for k, v in data["q_vocab"].items()}
        answers = {str(k): int(v) for k, v in data["a_vocab"].items()}
        for name, m in (("q_vocab", words), ("a_vocab", answers)):
            if m.get(PAD) != 0:
                raise VocabError(f"{source}: {name} must map 'PAD' to 0")
            if sorted(m.values()) != list(range(len(m))):
                raise VocabError(f"{source}: {name} ids must be 0..{len(m) - 1} without gaps or repeats")
        return cls(words, answers)

    def save(self, path: str | os.PathLike) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=1, sort_keys=True))

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Vocab":
        p = Path(path)
        if not p.is_file():
            raise VocabError(f"vocabulary file not found: {p}")
        try:
            data = json.loads(p.read_text())
        except json.JSONDecodeError as err:
            raise VocabError(f"{p} is not valid JSON: {err}") from err
        return cls.from_dict(data, str(p))

    # ------------------------------------------------------------------ encoding

    def encode(self, text: str, length: int, where: str = "") -> tuple[np.ndarray, np.ndarray, bool]:
        """(ids int64 (length,), pad mask bool (length,), truncated). Unknown words -> UNK, or an error without UNK."""
        toks = tokenize(text)
        ids = []
        for w in toks:
            i = self.words.get(w)
            if i is None:
                i = self.words.get(UNK)
                if i is None:
                    raise VocabError(f"{where or 'text'}: word {w!r} of {text!r} is not in the vocabulary (which has "
                                     "no UNK)")
            ids.append(i)
        truncated = len(ids) > length
        ids = ids[:length]
        out = np.zeros(length, dtype=np.int64)  # PAD = 0
        out[: len(ids)] = ids
        pad = np.ones(length, dtype=bool)
        pad[: len(ids)] = False
        return out, pad, truncated

    def answer_id(self, answer: str, where: str = "") -> int:
        i = self.answers.get(str(answer))
        if i is None or i == 0:
            raise VocabError(f"{where or 'answer'}: answer {answer!r} is not in the answer vocabulary "
                             f"{sorted(self.answers)}")
        return i
