"""Byte-level byte-pair encoding (BPE), trained from scratch, GPT-2 style.

    tok = BPETokenizer.train(load_documents("english", "train"), vocab_size=4096, special_tokens=["<|endoftext|>"])
    ids = tok.encode("def f(x): return x")        # list[int]
    tok.decode(ids)                               # the same text back
    tok.save("tokenizer.json")                    # Hugging Face `tokenizers` format

BPE (Gage, 1994; for subwords Sennrich et al., 2016, arXiv:1508.07909) starts from the 256 bytes, so any
text can be encoded and there is no unknown token (Radford et al., 2019, GPT-2), and repeatedly merges the
most frequent adjacent pair into a new token. As in GPT-2: special tokens are split out of the text first and
never merged; the rest is cut into pre-tokens by GPT-2's regex (words with their leading space, numbers,
punctuation runs, whitespace), and pairs are counted and merged only inside a pre-token. Ties between
equally frequent pairs go to the lexicographically greatest pair of byte strings.

Training is incremental: pair counts live in a dict with a lazy max-heap, and a merge only revisits the
distinct pre-tokens that contain the merged pair.
"""

from __future__ import annotations

import heapq
import json
from collections import Counter
from collections.abc import Iterable, Iterator
from itertools import pairwise
from pathlib import Path

import regex

GPT2_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
_PRETOKENIZE = regex.compile(GPT2_PATTERN)


def pretokenize(text: str) -> list[str]:
    """GPT-2's pre-tokens of `text` (no special-token handling): they concatenate back to `text`."""
    return _PRETOKENIZE.findall(text)


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible map from the 256 bytes to printable characters (used by tokenizer.json files).

    Printable Latin-1 bytes map to themselves; the others (controls, space, ...) to code points from 256 up,
    so the space byte becomes 'Ġ' and the newline 'Ċ'.
    """
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), 256))
    mapping, extra = {}, 0
    for b in range(256):
        if b in keep:
            mapping[b] = chr(b)
        else:
            mapping[b] = chr(256 + extra)
            extra += 1
    return mapping


def merge_ids(ids: list[int], pair: tuple[int, int], new_id: int) -> list[int]:
    """Replace every occurrence of `pair` in `ids`, scanning left to right without overlaps, by `new_id`."""
    a, b = pair
    out, i, n = [], 0, len(ids)
    while i < n:
        if i < n - 1 and ids[i] == a and ids[i + 1] == b:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


class _Greatest:
    """Heap key that orders byte-string pairs in reverse, so the min-heap pops the greatest pair first."""

    __slots__ = ("pair",)

    def __init__(self, pair: tuple[bytes, bytes]):
        self.pair = pair

    def __lt__(self, other: _Greatest) -> bool:
        return self.pair > other.pair


def _check_special_tokens(special_tokens: Iterable[str]) -> list[str]:
    if isinstance(special_tokens, str):
        raise TypeError(f"special_tokens must be a list of str, got the str {special_tokens!r}")
    specials = list(special_tokens)
    for token in specials:
        if not isinstance(token, str) or not token:
            raise ValueError(f"special_tokens must be non-empty strings, got {token!r}")
    if len(set(specials)) != len(specials):
        raise ValueError(f"special_tokens must be distinct, got {specials}")
    return specials


def _special_splitter(specials: list[str]) -> regex.Pattern | None:
    """A regex that captures any special token, longest first (so '<|a|><|b|>' never matches a shorter one)."""
    if not specials:
        return None
    return regex.compile("(" + "|".join(regex.escape(s) for s in sorted(specials, key=len, reverse=True)) + ")")


class BPETokenizer:
    """A trained byte-level BPE: `vocab` (id -> bytes), `merges` (byte-string pairs, in creation order).

    Ids 0..255 are the single bytes (id == byte value), then one id per merge, then the special tokens.
    """

    def __init__(self, vocab: dict[int, bytes], merges: list[tuple[bytes, bytes]], special_tokens: Iterable[str] = ()):
        self.vocab = dict(vocab)
        self.merges = list(merges)
        self.special_tokens = _check_special_tokens(special_tokens)
        for i in range(256):
            if self.vocab.get(i) != bytes([i]):
                raise ValueError(f"vocab[{i}] must be the single byte {bytes([i])!r}, got {self.vocab.get(i)!r}")
        self.special_ids = {}
        for token in self.special_tokens:
            ids = [i for i, b in self.vocab.items() if b == token.encode("utf-8") and i >= 256]
            if not ids:
                raise ValueError(f"special token {token!r} has no id in vocab")
            self.special_ids[token] = max(ids)
        special_id_set = set(self.special_ids.values())
        self._id_of = {b: i for i, b in sorted(self.vocab.items(), reverse=True) if i not in special_id_set}
        self._ranks = {}
        for rank, (a, b) in enumerate(self.merges):
            if a not in self._id_of or b not in self._id_of or a + b not in self._id_of:
                raise ValueError(f"merge {rank} ({a!r}, {b!r}) uses a token that is not in vocab")
            self._ranks.setdefault((self._id_of[a], self._id_of[b]), (rank, self._id_of[a + b]))
        self._splitter = _special_splitter(self.special_tokens)
        self._cache: dict[str, list[int]] = {}

    # ------------------------------------------------------------------ training
    @classmethod
    def train(cls, text_or_texts: str | Iterable[str], vocab_size: int,
              special_tokens: Iterable[str] = ()) -> BPETokenizer:
        """Learn merges until the vocabulary has `vocab_size` distinct tokens (bytes + merges + specials).

        `text_or_texts` is one text or an iterable of documents (pre-tokens never span two documents).
        Each step merges the most frequent adjacent pair inside pre-tokens (ties: the greatest pair of byte
        strings). Training stops early, with a smaller vocabulary, if no pair is left to merge. In the rare
        case where a merge rebuilds a byte string that is already a token (('a', 'bc') after ('ab', 'c')), the
        merge is recorded and reuses that token's id, as Hugging Face `tokenizers` does.
        """
        specials = _check_special_tokens(special_tokens)
        if not isinstance(vocab_size, int) or isinstance(vocab_size, bool):
            raise TypeError(f"vocab_size must be an int, got {type(vocab_size).__name__}")
        if vocab_size < 256 + len(specials):
            raise ValueError(f"vocab_size must be >= 256 + len(special_tokens) = {256 + len(specials)} "
                             f"(every byte and every special token needs an id), got {vocab_size}")
        texts = [text_or_texts] if isinstance(text_or_texts, str) else list(text_or_texts)
        for text in texts:
            if not isinstance(text, str):
                raise TypeError(f"text_or_texts must be a str or an iterable of str, got an item of type "
                                f"{type(text).__name__}")
        if not any(texts):
            raise ValueError("text_or_texts is empty: BPE needs some text to count pairs in")

        splitter = _special_splitter(specials)
        word_counts: Counter[str] = Counter()
        for text in texts:
            for chunk in (splitter.split(text) if splitter else [text]):
                if chunk and chunk not in specials:
                    word_counts.update(_PRETOKENIZE.findall(chunk))
        words = [list(w.encode("utf-8")) for w in word_counts]  # each distinct pre-token as byte ids
        counts = list(word_counts.values())
        vocab = {i: bytes([i]) for i in range(256)}
        merges = cls._learn_merges(words, counts, vocab, vocab_size - len(specials))
        for token in specials:
            vocab[len(vocab)] = token.encode("utf-8")
        return cls(vocab, merges, specials)

    @staticmethod
    def _learn_merges(words: list[list[int]], counts: list[int], vocab: dict[int, bytes],
                      n_tokens: int) -> list[tuple[bytes, bytes]]:
        """The incremental BPE loop; extends `vocab` in place until it holds `n_tokens` distinct byte strings."""
        pair_counts: dict[tuple[int, int], int] = {}
        where: dict[tuple[int, int], set[int]] = {}
        for w, (ids, count) in enumerate(zip(words, counts, strict=True)):
            for pair in pairwise(ids):
                pair_counts[pair] = pair_counts.get(pair, 0) + count
                where.setdefault(pair, set()).add(w)
        heap = [(-c, _Greatest((vocab[p[0]], vocab[p[1]])), p) for p, c in pair_counts.items()]
        heapq.heapify(heap)
        id_of = {b: i for i, b in vocab.items()}
        merges: list[tuple[bytes, bytes]] = []
        while len(id_of) < n_tokens and heap:
            neg_count, _, pair = heapq.heappop(heap)
            if pair_counts.get(pair, 0) != -neg_count:
                continue  # stale entry: this pair's count changed since it was pushed
            merged = vocab[pair[0]] + vocab[pair[1]]
            new_id = id_of.get(merged)
            if new_id is None:
                new_id = len(vocab)
                vocab[new_id] = merged
                id_of[merged] = new_id
            merges.append((vocab[pair[0]], vocab[pair[1]]))
            changed: dict[tuple[int, int], int] = {}
            for w in where.pop(pair):
                old = words[w]
                new = merge_ids(old, pair, new_id)
                if len(new) == len(old):
                    continue  # index entry left over from an earlier merge of this word
                words[w] = new
                count = counts[w]
                for p in pairwise(old):
                    changed[p] = changed.get(p, 0) - count
                for p in pairwise(new):
                    changed[p] = changed.get(p, 0) + count
                    if p != pair:
                        where.setdefault(p, set()).add(w)
            for p, delta in changed.items():
                if delta == 0 or p == pair:
                    continue
                c = pair_counts.get(p, 0) + delta
                if c > 0:
                    pair_counts[p] = c
                    heapq.heappush(heap, (-c, _Greatest((vocab[p[0]], vocab[p[1]])), p))
                else:
                    pair_counts.pop(p, None)
            pair_counts.pop(pair, None)
        return merges

    # ------------------------------------------------------------------ encoding
    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def _encode_pretoken(self, piece: str) -> list[int]:
        """Byte ids of one pre-token, then repeatedly merge the adjacent pair of lowest rank."""
        cached = self._cache.get(piece)
        if cached is not None:
            return cached
        ids = list(piece.encode("utf-8"))
        ranks = self._ranks
        while len(ids) > 1:
            best = min(pairwise(ids), key=lambda p: ranks.get(p, (float("inf"), 0))[0])
            found = ranks.get(best)
            if found is None:
                break
            ids = merge_ids(ids, best, found[1])
        if len(self._cache) < 500_000:
            self._cache[piece] = ids
        return ids

    def _encode_ordinary(self, text: str) -> list[int]:
        out: list[int] = []
        for piece in _PRETOKENIZE.findall(text):
            out.extend(self._encode_pretoken(piece))
        return out

    def encode(self, text: str) -> list[int]:
        """Token ids of `text`: special tokens kept whole, the rest pre-tokenized and merged by rank."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        if self._splitter is None:
            return self._encode_ordinary(text)
        out: list[int] = []
        for i, chunk in enumerate(self._splitter.split(text)):
            if i % 2:  # odd chunks are the captured special tokens
                out.append(self.special_ids[chunk])
            elif chunk:
                out.extend(self._encode_ordinary(chunk))
        return out

    def encode_iterable(self, chunks: Iterable[str]) -> Iterator[int]:
        """Encode a stream of text chunks (e.g. the lines of a file) lazily; same ids as encode(''.join(chunks)).

        Text whose pre-tokens could still change when more text arrives (the last two pre-tokens, a
        possible beginning of a special token) is held back in a buffer.
        """
        buffer = ""
        for chunk in chunks:
            if not isinstance(chunk, str):
                raise TypeError(f"encode_iterable needs str chunks, got {type(chunk).__name__}")
            buffer += chunk
            ids, buffer = self._encode_final_part(buffer)
            yield from ids
        if buffer:
            yield from self.encode(buffer)

    def _encode_final_part(self, buffer: str) -> tuple[list[int], str]:
        """Ids of the head of `buffer` that appending text cannot change, and the tail left to encode later.

        A pre-token is final once two more follow it: GPT-2's regex looks at most two characters past the
        end of a match (the contraction "'ll"), and each later match holds at least one character.
        """
        ids: list[int] = []
        pos, limit = 0, len(buffer)
        if self._splitter is not None:
            for m in self._splitter.finditer(buffer):
                if m.end() == len(buffer):
                    break  # a longer special token could still start here
                ids += self._encode_ordinary(buffer[pos:m.start()])
                ids.append(self.special_ids[m.group()])
                pos = m.end()
            longest = max(map(len, self.special_tokens))
            for start in range(max(pos, len(buffer) - longest), len(buffer)):
                if any(s.startswith(buffer[start:]) for s in self.special_tokens):
                    limit = start  # the tail may be the beginning of a special token
                    break
        pieces = _PRETOKENIZE.findall(buffer[pos:limit])
        if len(pieces) > 2:
            for piece in pieces[:-2]:
                ids += self._encode_pretoken(piece)
            pos += sum(map(len, pieces[:-2]))
        return ids, buffer[pos:]

    def decode(self, ids: Iterable[int]) -> str:
        """The text of `ids`; byte sequences that are not valid UTF-8 become U+FFFD instead of raising."""
        ids = ids.tolist() if hasattr(ids, "tolist") else list(ids)
        try:
            data = b"".join(self.vocab[i] for i in ids)
        except (KeyError, TypeError):
            bad = next(i for i in ids if not isinstance(i, int) or i not in self.vocab)
            raise ValueError(f"cannot decode id {bad!r}: ids must be ints in [0, {self.vocab_size})") from None
        return data.decode("utf-8", errors="replace")

    # ------------------------------------------------------------------ tokenizer.json
    def to_json(self) -> dict:
        """The tokenizer as a Hugging Face `tokenizers` tokenizer.json document (ByteLevel BPE)."""
        to_char = bytes_to_unicode()

        def show(b: bytes) -> str:
            return "".join(to_char[x] for x in b)

        special_id_set = set(self.special_ids.values())
        model_vocab = {show(b): i for i, b in sorted(self.vocab.items()) if i not in special_id_set
                       and self._id_of[b] == i}
        added = [{"id": self.special_ids[t], "content": t, "single_word": False, "lstrip": False, "rstrip": False,
                  "normalized": False, "special": True} for t in self.special_tokens]
        byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
        return {
            "version": "1.0", "truncation": None, "padding": None, "added_tokens": added, "normalizer": None,
            "pre_tokenizer": byte_level, "post_processor": None, "decoder": byte_level,
            "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                      "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                      "vocab": model_vocab, "merges": [[show(a), show(b)] for a, b in self.merges]},
        }

    def save(self, path: str | Path) -> Path:
        """Write tokenizer.json; `tokenizers.Tokenizer.from_file(path)` loads the same tokenizer."""
        path = Path(path)
        path.write_text(json.dumps(self.to_json(), ensure_ascii=False, indent=1), encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | Path) -> BPETokenizer:
        """Read a ByteLevel BPE tokenizer.json (written by `save` or by Hugging Face `tokenizers`)."""
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        model = data.get("model", {})
        if model.get("type") != "BPE" or (data.get("pre_tokenizer") or {}).get("type") != "ByteLevel":
            raise ValueError(f"{path} is not a ByteLevel BPE tokenizer.json (model {model.get('type')!r}, "
                             f"pre_tokenizer {(data.get('pre_tokenizer') or {}).get('type')!r})")
        to_byte = {c: b for b, c in bytes_to_unicode().items()}

        def raw(s: str) -> bytes:
            return bytes(to_byte[c] for c in s)

        vocab = {i: raw(s) for s, i in model["vocab"].items()}
        merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
        merges = [(raw(a), raw(b)) for a, b in merges]
        specials = [t["content"] for t in sorted(data.get("added_tokens", []), key=lambda t: t["id"]) if t["special"]]
        for t in data.get("added_tokens", []):
            vocab[t["id"]] = t["content"].encode("utf-8")
        return cls(vocab, merges, specials)

    def __repr__(self) -> str:
        return (f"BPETokenizer(vocab_size={self.vocab_size}, merges={len(self.merges)}, "
                f"special_tokens={self.special_tokens})")
