"""The course corpora, all text that ships with Python and the pinned packages; nothing is downloaded.

    load_corpus()                                   # CPython's help topics, as before (about 460 kB)
    load_corpus("english", split="train")           # help topics + docstrings of the stdlib, numpy, ... (5.5 MB)
    load_documents("python-code", split="val")      # stdlib source files, one document per file

"help-topics" is read from the running Python's `pydoc_data.topics`. "english" and "python-code" are read
from `minimodels/text/data/*.jsonl.gz`, built by `scripts/build_corpus.py` and committed, so every Python
version sees the same bytes; their sha256 is checked against `corpus_manifest.json` on load.

Splits are by document, at random with a fixed seed: a document is in "val" when the sha256 of
(seed, text) falls in the lowest `VAL_FRACTION[name]` of the hash range. The rule needs no list of
documents, so it is the same on every machine and does not move if documents are added or removed.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from functools import lru_cache
from pathlib import Path

DATA = Path(__file__).resolve().parent / "data"
CORPORA = ("help-topics", "english", "python-code")
SPLITS = (None, "train", "val")
VAL_FRACTION = {"help-topics": 0.10, "english": 0.05, "python-code": 0.05}
SPLIT_SEED = 1234
SEPARATOR = "\n\n"  # between documents in load_corpus


def _check_name(name: str) -> None:
    if name not in CORPORA:
        raise ValueError(f"name must be one of {CORPORA}, got {name!r}")


def _check_split(split: str | None) -> None:
    if split not in SPLITS:
        raise ValueError(f"split must be None (all documents), 'train' or 'val', got {split!r}")


def is_val_document(text: str, fraction: float, seed: int = SPLIT_SEED) -> bool:
    """True when `text` belongs to the validation split: sha256(seed, text) lands in the lowest `fraction`."""
    digest = hashlib.sha256(f"{seed}\x00{text}".encode()).digest()
    return int.from_bytes(digest[:8], "big") < fraction * 2**64


@lru_cache(maxsize=1)
def manifest() -> dict:
    """What the committed corpus files hold: sha256, sizes, origins and licences (corpus_manifest.json)."""
    return json.loads((DATA / "corpus_manifest.json").read_text(encoding="utf-8"))


@lru_cache(maxsize=4)
def _committed_records(name: str) -> tuple[tuple[str, str], ...]:
    entry = manifest()["corpora"][name]
    path = DATA / entry["file"]
    if not path.is_file():
        raise FileNotFoundError(f"corpus file {path} is missing; rebuild it with scripts/build_corpus.py")
    packed = path.read_bytes()
    digest = hashlib.sha256(packed).hexdigest()
    if digest != entry["sha256"]:
        raise ValueError(f"corpus file {path} has sha256 {digest}, but corpus_manifest.json records "
                         f"{entry['sha256']}: the file is damaged or was rebuilt without updating the manifest")
    lines = gzip.decompress(packed).decode("utf-8").splitlines()
    return tuple((record["source"], record["text"]) for record in map(json.loads, lines))


def _help_topic_records() -> tuple[tuple[str, str], ...]:
    from pydoc_data.topics import topics

    return tuple((f"pydoc_data.topics:{key}", topics[key].strip()) for key in sorted(topics))


def load_records(name: str = "help-topics", split: str | None = None) -> list[tuple[str, str]]:
    """(source, text) of every document of corpus `name` in `split`, in the corpus order.

    `source` says where the text comes from, e.g. 'stdlib/json/__init__.py:dumps'.
    """
    _check_name(name)
    _check_split(split)
    records = _help_topic_records() if name == "help-topics" else _committed_records(name)
    if split is None:
        return list(records)
    want_val = split == "val"
    fraction = VAL_FRACTION[name]
    return [r for r in records if is_val_document(r[1], fraction) == want_val]


def load_documents(name: str = "help-topics", split: str | None = None) -> list[str]:
    """The documents (texts) of corpus `name` ('help-topics', 'english', 'python-code') in `split`."""
    return [text for _, text in load_records(name, split)]


def load_corpus(name: str = "help-topics", split: str | None = None, max_chars: int | None = None) -> str:
    """The documents of corpus `name` in `split`, joined by a blank line; the first `max_chars` characters.

    `load_corpus()` is CPython's help topics (keys sorted), as it has always been.
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, one of {CORPORA}, got {type(name).__name__}")
    if max_chars is not None and (not isinstance(max_chars, int) or max_chars < 1):
        raise ValueError(f"max_chars must be None or an int >= 1, got {max_chars!r}")
    text = SEPARATOR.join(load_documents(name, split))
    return text if max_chars is None else text[:max_chars]
