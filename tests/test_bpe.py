"""Byte-level BPE: merges equal an independent naive trainer, round trips, Hugging Face tokenizers parity."""

from __future__ import annotations

import random
from collections import Counter
from itertools import pairwise

import pytest
import regex
from tokenizers import Tokenizer, pre_tokenizers

from minimodels.text.bpe import BPETokenizer, bytes_to_unicode, pretokenize
from minimodels.text.corpus import load_corpus

GPT2_REGEX = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
EOT = "<|endoftext|>"


def naive_train(texts: list[str], vocab_size: int, specials: list[str]) -> list[tuple[bytes, bytes]]:
    """Textbook BPE on byte strings: recount every pair from scratch at every step, merge the best one.

    Best = highest count, ties to the greatest (bytes, bytes) pair; stop at vocab_size distinct tokens.
    """
    words: Counter[tuple[bytes, ...]] = Counter()
    for text in texts:
        pieces = regex.split("(" + "|".join(map(regex.escape, specials)) + ")", text) if specials else [text]
        for piece in pieces:
            if piece in specials:
                continue
            for word in regex.findall(GPT2_REGEX, piece):
                words[tuple(bytes([b]) for b in word.encode("utf-8"))] += 1
    tokens = {bytes([i]) for i in range(256)}
    merges = []
    while len(tokens) < vocab_size - len(specials):
        pairs: Counter[tuple[bytes, bytes]] = Counter()
        for word, count in words.items():
            for pair in pairwise(word):
                pairs[pair] += count
        if not pairs:
            break
        best = max(pairs, key=lambda p: (pairs[p], p))
        merges.append(best)
        tokens.add(best[0] + best[1])
        merged: Counter[tuple[bytes, ...]] = Counter()
        for word, count in words.items():
            out, i = [], 0
            while i < len(word):
                if i + 1 < len(word) and (word[i], word[i + 1]) == best:
                    out.append(best[0] + best[1])
                    i += 2
                else:
                    out.append(word[i])
                    i += 1
            merged[tuple(out)] += count
        words = merged
    return merges


SMALL_TEXTS = {
    "help-topics": [load_corpus(max_chars=4000)],
    "ties": ["ab ab cd cd ef ef xy xy"],
    "repeats": ["aaaaaaa aaa aa a bbbbbb aaaa", "abababab abab ab"],
    "unicode": ["naïve café 東京 東京 東京 🙂🙂 🙂 déjà vu, déjà vu! ☃☃☃"],
    "with specials": [f"hello world{EOT}hello there{EOT} world world", "world<pad>hello<pad><pad>"],
}


@pytest.mark.parametrize("name", sorted(SMALL_TEXTS))
def test_merges_equal_naive_trainer(name):
    texts = SMALL_TEXTS[name]
    specials = [EOT, "<pad>"] if name == "with specials" else []
    vocab_size = 256 + len(specials) + 60
    tok = BPETokenizer.train(texts, vocab_size, specials)
    assert tok.merges == naive_train(texts, vocab_size, specials)


def test_tie_goes_to_greatest_pair():
    # pairs (x,y), (' ',a), (a,b) all occur twice: the lexicographically greatest byte pair is (x,y)
    tok = BPETokenizer.train("xy xy ab ab", 257)
    assert tok.merges == [(b"x", b"y")]


def test_vocab_layout_and_merge_count():
    tok = BPETokenizer.train(load_corpus(max_chars=20_000), 400, [EOT])
    assert len(tok.merges) == 400 - 256 - 1
    assert tok.vocab_size == 400
    assert all(tok.vocab[i] == bytes([i]) for i in range(256))
    assert [tok.vocab[256 + k] for k in range(len(tok.merges))] == [a + b for a, b in tok.merges]
    assert tok.vocab[399] == EOT.encode() and tok.special_ids[EOT] == 399


def test_specials_are_never_merged_across():
    text = f"ab{EOT}ab{EOT}ab{EOT}"
    tok = BPETokenizer.train(text, 300, [EOT])
    assert all(b"<|" not in a + b for a, b in tok.merges)
    assert tok.encode(f"ab{EOT}") == [tok._id_of[b"ab"], tok.special_ids[EOT]]


def test_pretokenize_equals_hf_byte_level():
    text = "Hello,  world!\n\n  It's 2024 — we'll test   spaces\t\tand 'quotes' 12345 ünïcode\r\n"
    to_byte = {c: b for b, c in bytes_to_unicode().items()}
    hf = [bytes(to_byte[c] for c in piece).decode()
          for piece, _ in pre_tokenizers.ByteLevel(add_prefix_space=False).pre_tokenize_str(text)]
    assert pretokenize(text) == hf
    assert "".join(pretokenize(text)) == text


@pytest.fixture(scope="module")
def tokenizer() -> BPETokenizer:
    return BPETokenizer.train(load_corpus(max_chars=60_000), 600, [EOT, "<pad>"])


def random_unicode(rng: random.Random, n: int) -> str:
    ranges = [(0x20, 0x7E), (0xA0, 0x24F), (0x370, 0x3FF), (0x400, 0x4FF), (0x4E00, 0x4FFF), (0x1F600, 0x1F64F),
              (0x0, 0x1F), (0x10000, 0x10FFF)]
    chars = []
    for _ in range(n):
        lo, hi = rng.choice(ranges)
        chars.append(chr(rng.randint(lo, hi)))
    return "".join(chars)


TEXTS = [
    "",
    "def f(x):\n    return x ** 2  # square\n",
    "emoji 🙂👍🏽👨‍👩‍👧 flags 🇫🇷 and zero-width\u200bjoiner",
    "   leading and trailing   \n\n\n\t \r\n  ",
    f"two documents{EOT}second one<pad><pad>{EOT}",
    f"<|endoftext{EOT}|> broken <|end of|text|>",
    "Numbers 3.14159 1,000,000 0xFF 1e-10 and 2024-01-31",
    "日本語のテキストと English mixed, русский текст, العربية",
]


@pytest.mark.parametrize("text", TEXTS)
def test_round_trip_fixed(tokenizer, text):
    assert tokenizer.decode(tokenizer.encode(text)) == text


def test_round_trip_random_unicode(tokenizer):
    rng = random.Random(0)
    for _ in range(50):
        text = random_unicode(rng, rng.randint(0, 80))
        if rng.random() < 0.3:
            text = text[:10] + EOT + text[10:]
        assert tokenizer.decode(tokenizer.encode(text)) == text


def test_specials_kept_whole(tokenizer):
    ids = tokenizer.encode(f"a{EOT}b<pad>")
    assert tokenizer.special_ids[EOT] in ids and tokenizer.special_ids["<pad>"] in ids
    assert tokenizer.encode(EOT) == [tokenizer.special_ids[EOT]]


def test_decode_replaces_invalid_utf8(tokenizer):
    ids = tokenizer.encode("é")  # two bytes
    assert len(bytes(b for i in ids for b in tokenizer.vocab[i])) == 2
    assert tokenizer.decode([0xC3]) == "\ufffd"  # a lone lead byte


def test_encode_iterable_equals_encode(tokenizer):
    rng = random.Random(1)
    text = "".join(TEXTS) + load_corpus(max_chars=3000) + "it'll  \n\n x'l" + EOT
    expected = tokenizer.encode(text)
    for _ in range(20):
        cuts = sorted(rng.sample(range(1, len(text)), 40))
        chunks = [text[i:j] for i, j in pairwise([0, *cuts, len(text)])]
        assert list(tokenizer.encode_iterable(chunks)) == expected
    assert list(tokenizer.encode_iterable(iter(text))) == expected  # one character at a time


def test_hf_tokenizers_parity(tokenizer, tmp_path):
    path = tokenizer.save(tmp_path / "tokenizer.json")
    hf = Tokenizer.from_file(str(path))
    rng = random.Random(2)
    texts = TEXTS + [load_corpus(max_chars=5000)] + [random_unicode(rng, 60) for _ in range(20)]
    for text in texts:
        ids = tokenizer.encode(text)
        assert hf.encode(text).ids == ids, text
        assert hf.decode(ids, skip_special_tokens=False) == tokenizer.decode(ids)
    assert hf.get_vocab_size() == tokenizer.vocab_size


def test_save_load_round_trip(tokenizer, tmp_path):
    loaded = BPETokenizer.load(tokenizer.save(tmp_path / "t.json"))
    assert loaded.vocab == tokenizer.vocab
    assert loaded.merges == tokenizer.merges
    assert loaded.special_tokens == tokenizer.special_tokens
    assert loaded.encode(TEXTS[4]) == tokenizer.encode(TEXTS[4])


def test_bad_input(tokenizer):
    with pytest.raises(ValueError, match=r"vocab_size must be >= 256 \+ len\(special_tokens\) = 257"):
        BPETokenizer.train("some text", 256, [EOT])
    with pytest.raises(ValueError, match="text_or_texts is empty"):
        BPETokenizer.train("", 300)
    with pytest.raises(ValueError, match="text_or_texts is empty"):
        BPETokenizer.train([], 300)
    with pytest.raises(TypeError, match="vocab_size must be an int"):
        BPETokenizer.train("text", 300.0)
    with pytest.raises(TypeError, match="an item of type bytes"):
        BPETokenizer.train([b"bytes"], 300)
    with pytest.raises(ValueError, match="special_tokens must be distinct"):
        BPETokenizer.train("text", 300, [EOT, EOT])
    with pytest.raises(TypeError, match="special_tokens must be a list of str"):
        BPETokenizer.train("text", 300, EOT)
    with pytest.raises(ValueError, match=r"cannot decode id 600: ids must be ints in \[0, 600\)"):
        tokenizer.decode([1, 600])
    with pytest.raises(ValueError, match="cannot decode id -1"):
        tokenizer.decode([-1])
    with pytest.raises(TypeError, match="text must be a str"):
        tokenizer.encode(b"bytes")
    with pytest.raises(ValueError, match=r"vocab\[65\] must be the single byte b'A'"):
        BPETokenizer({i: bytes([i]) for i in range(256) if i != 65}, [])
    with pytest.raises(ValueError, match="merge 0 .* uses a token that is not in vocab"):
        BPETokenizer({i: bytes([i]) for i in range(256)}, [(b"a", b"b")])
