"""The course corpora: today's help topics unchanged, committed corpora checked by sha256, seeded splits."""

from __future__ import annotations

import ast
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from minimodels.text import corpus
from minimodels.text.corpus import CORPORA, is_val_document, load_corpus, load_documents, load_records

ROOT = Path(__file__).resolve().parents[1]


def help_topics_today() -> str:
    from pydoc_data.topics import topics

    return "\n\n".join(topics[key].strip() for key in sorted(topics))


def test_default_is_the_help_topics_as_before():
    assert load_corpus() == help_topics_today()
    assert load_corpus(max_chars=1234) == help_topics_today()[:1234]
    assert load_corpus("help-topics") == load_corpus()


def test_english_is_at_least_5_mb_of_distinct_prose():
    docs = load_documents("english")
    assert sum(len(d.encode("utf-8")) for d in docs) >= 5_000_000
    assert len(set(docs)) == len(docs) and all(docs)
    sources = {source.split("/")[0].split(":")[0] for source, _ in load_records("english")}
    assert {"pydoc_data.topics", "stdlib"} <= sources
    text = load_corpus("english", max_chars=200_000)
    letters = sum(ch.isalpha() or ch.isspace() for ch in text)
    assert letters / len(text) > 0.8


def test_python_code_is_python_source():
    records = load_records("python-code")
    assert len(records) > 100
    assert all(source.startswith("stdlib/") and source.endswith(".py") for source, _ in records)
    parsed = 0
    for _, text in records[:15]:
        try:
            ast.parse(text)
            parsed += 1
        except SyntaxError:  # newer syntax than the running Python
            pass
    assert parsed >= 13


def test_committed_files_match_manifest_sha256():
    entries = json.loads((corpus.DATA / "corpus_manifest.json").read_text())["corpora"]
    assert set(entries) == {"english", "python-code"}
    total = 0
    for entry in entries.values():
        data = (corpus.DATA / entry["file"]).read_bytes()
        total += len(data)
        assert hashlib.sha256(data).hexdigest() == entry["sha256"]
        assert entry["origins"] and all(o["licence"] for o in entry["origins"])
    assert total < 8_000_000
    assert (corpus.DATA / "LICENSE.md").is_file()


@pytest.mark.parametrize("name", CORPORA)
def test_splits_partition_the_documents(name):
    every = load_documents(name)
    train, val = load_documents(name, "train"), load_documents(name, "val")
    assert train and val
    assert sorted(train + val) == sorted(every)
    assert not set(train) & set(val)
    fraction = len(val) / len(every)
    assert abs(fraction - corpus.VAL_FRACTION[name]) < 0.05
    assert load_documents(name, "val") == val  # deterministic
    # the rule depends on the text only, so it holds for each document on its own
    assert all(is_val_document(d, corpus.VAL_FRACTION[name]) for d in val[:20])
    assert load_corpus(name, "val") == "\n\n".join(val)


def test_damaged_file_is_refused(tmp_path, monkeypatch):
    for item in corpus.DATA.iterdir():
        shutil.copy(item, tmp_path / item.name)
    path = tmp_path / "python-code.jsonl.gz"
    data = bytearray(path.read_bytes())
    data[100] ^= 0xFF
    path.write_bytes(bytes(data))
    monkeypatch.setattr(corpus, "DATA", tmp_path)
    corpus.manifest.cache_clear()
    corpus._committed_records.cache_clear()
    try:
        with pytest.raises(ValueError, match="python-code.jsonl.gz has sha256 .* but corpus_manifest.json records"):
            load_documents("python-code")
    finally:
        corpus.manifest.cache_clear()
        corpus._committed_records.cache_clear()


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"name must be one of \('help-topics', 'english', 'python-code'\), got 'x'"):
        load_corpus("x")
    with pytest.raises(TypeError, match="name must be a str"):
        load_corpus(1000)
    with pytest.raises(ValueError, match="split must be None .* got 'test'"):
        load_documents("english", "test")
    with pytest.raises(ValueError, match="max_chars must be None or an int >= 1, got 0"):
        load_corpus(max_chars=0)


def _built_with_this_environment() -> bool:
    built = json.loads((corpus.DATA / "corpus_manifest.json").read_text())
    versions = {o["source"].split()[0]: o["version"] for e in built["corpora"].values() for o in e["origins"]}
    wanted = {"numpy": "numpy", "matplotlib": "matplotlib", "torch": "torch"}
    same_packages = all(metadata.version(dist) == versions[key] for key, dist in wanted.items() if key in versions)
    return built["built_with"]["python"] == platform.python_version() and same_packages


@pytest.mark.skipif(not os.environ.get("MINIMODELS_CHECK_BUILD"), reason="slow (10 s of CPU): MINIMODELS_CHECK_BUILD=1")
@pytest.mark.skipif(not _built_with_this_environment(), reason="the corpus was built with another Python/packages")
def test_build_script_reproduces_the_committed_corpus():
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "build_corpus.py"), "--check"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "content identical" in result.stdout
