"""Tokenisation, padding and the vocabularies of the VQA reasoner (section 6.1)."""

import numpy as np
import pytest

from cjepa.eval.vqa.text import CLEVRER_ANSWERS, PAD, UNK, Vocab, VocabError, tokenize


def test_tokenize_is_the_original_rule():
    """Lowercase, '?' deleted, split on single spaces, empty strings dropped; other punctuation stays attached."""
    assert tokenize("What is the Color of the cube, if  any?") == ["what", "is", "the", "color", "of", "the", "cube,",
                                                                   "if", "any"]
    assert tokenize("??") == []


def test_encode_pads_with_pad_zero_and_marks_padding():
    """Ids are right-padded with PAD=0 to the fixed length; the pad mask is True exactly on padding."""
    v = Vocab.build(["how many cubes"], [])
    ids, pad, cut = v.encode("How many cubes?", 5)
    assert ids.dtype == np.int64 and ids.shape == (5,)
    assert ids.tolist()[:3] == [v.words["how"], v.words["many"], v.words["cubes"]] and ids.tolist()[3:] == [0, 0]
    assert pad.tolist() == [False, False, False, True, True] and not cut


def test_encode_truncates_and_reports():
    v = Vocab.build(["a b c d"], [])
    ids, pad, cut = v.encode("a b c d", 2)
    assert cut and ids.tolist() == [v.words["a"], v.words["b"]] and not pad.any()


def test_vocab_is_deterministic_sorted_with_pad_first_and_unk_last():
    """The same texts in any order give the same ids: PAD=0, sorted words from 1, UNK last."""
    a = Vocab.build(["the red cube", "a sphere"], [])
    b = Vocab.build(["a sphere", "the red cube", "the red cube"], [])
    assert a == b
    assert a.words[PAD] == 0 and a.words[UNK] == len(a.words) - 1
    words = [w for w, _ in sorted(a.words.items(), key=lambda kv: kv[1])][1:-1]
    assert words == sorted(words) == ["a", "cube", "red", "sphere", "the"]


def test_answer_vocab_matches_the_original_ids():
    """CLEVRER's fixed answers get the original CLEVRER_vocab.json ids (22 classes with PAD)."""
    v = Vocab.build([], ["yes", "3"])
    assert v.num_answers == 22 == len(CLEVRER_ANSWERS) + 1
    assert (v.answers["0"], v.answers["5"], v.answers["blue"], v.answers["cylinder"],
            v.answers["yes"]) == (1, 6, 7, 11, 21)
    extra = Vocab.build([], ["yes", "magenta"])
    assert extra.answers["magenta"] == 22 and extra.num_answers == 23


def test_unknown_words_map_to_unk_or_fail_without_it():
    """Words unseen in training become UNK; a vocabulary without UNK (the original file) raises, naming the word."""
    v = Vocab.build(["red cube"], [])
    ids, _, _ = v.encode("red ball", 3)
    assert ids[1] == v.words[UNK]
    original = Vocab.from_dict({"q_vocab": {"PAD": 0, "red": 1}, "a_vocab": {"PAD": 0, "yes": 1}})
    with pytest.raises(VocabError, match="'ball'"):
        original.encode("red ball", 3, "q7")


def test_vocab_file_round_trip_and_checks(tmp_path):
    v = Vocab.build(["is there a cube"], ["no"])
    v.save(tmp_path / "vocab.json")
    assert Vocab.load(tmp_path / "vocab.json") == v
    with pytest.raises(VocabError, match="not found"):
        Vocab.load(tmp_path / "missing.json")
    with pytest.raises(VocabError, match="without gaps"):
        Vocab.from_dict({"q_vocab": {"PAD": 0, "a": 2}, "a_vocab": {"PAD": 0}})
    with pytest.raises(VocabError, match="answer 'maybe'"):
        v.answer_id("maybe", "scene 3 question 1")
