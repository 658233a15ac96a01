"""Build the course corpora from text that ships with Python and the pinned packages; nothing is downloaded.

    python scripts/build_corpus.py           # writes minimodels/text/data/{english,python-code}.jsonl.gz
    python scripts/build_corpus.py --check   # rebuilds in memory and compares with the committed manifest

english      CPython's help topics (`pydoc_data.topics`), then the docstrings of the standard library, then
             the docstrings of a few pinned packages (numpy, torch, matplotlib), one document per docstring,
             kept when prose-like and deduplicated.
python-code  the source files of the standard library (tests excluded), a seeded random subset.

Deterministic: directories and files are walked in sorted order, docstrings are read with `ast` (no module is
imported, so no import side effects), and the output is gzip with mtime 0. The text depends on the Python
and package versions it is built from, which is why the built files are committed (with their sha256 in
corpus_manifest.json, checked by `minimodels.text.corpus` on every load).
"""

from __future__ import annotations

import argparse
import ast
import gzip
import hashlib
import json
import os
import platform
import random
import sys
import sysconfig
from importlib import metadata
from pathlib import Path

DATA = Path(__file__).resolve().parents[1] / "minimodels" / "text" / "data"
SKIP_DIRS = {"__pycache__", "site-packages", "test", "tests", "testing", "idle_test", "_vendor", "vendored"}
# (distribution, import folder, licence) in the order they are read; text is added until TARGET_CHARS.
# Private subpackages (folders starting with "_") of packages are skipped: internals, little prose.
PACKAGES = [("numpy", "numpy", "BSD-3-Clause"),
            ("matplotlib", "matplotlib", "Matplotlib License (PSF-based, BSD-compatible)"),
            ("torch", "torch", "BSD-3-Clause")]
TARGET_CHARS = 5_500_000
MIN_CHARS = 200  # shorter docstrings are mostly one-line summaries
MIN_PROSE_FRACTION = 0.80  # letters and whitespace among all characters
MAX_PROMPT_LINE_FRACTION = 0.3  # lines starting with '>>>' or '...' (doctest examples)
CODE_SEED = 0
CODE_TARGET_CHARS = 6_000_000
CODE_MAX_FILE_CHARS = 150_000


def python_files(root: Path, skip_private: bool = False) -> list[Path]:
    """Every .py file under root in sorted order, skipping tests, vendored code, caches (and private folders)."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        private = ("_", ".") if skip_private else (".",)
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS and not d.startswith(private))
        found += [Path(dirpath) / f for f in sorted(filenames) if f.endswith(".py")]
    return found


def read_source(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError):
        return None


def docstrings(source: str) -> list[tuple[str, str]]:
    """(qualified name, cleaned docstring) of the module, its classes and functions, in source order."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return []
    found = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                name = f"{prefix}{child.name}"
                doc = ast.get_docstring(child, clean=True)
                if doc:
                    found.append((name, doc))
                visit(child, name + ".")

    module_doc = ast.get_docstring(tree, clean=True)
    if module_doc:
        found.append(("<module>", module_doc))
    visit(tree, "")
    return found


def is_prose(text: str) -> bool:
    """Long enough, mostly letters and spaces, not mostly doctest prompts."""
    if len(text) < MIN_CHARS:
        return False
    prose = sum(ch.isalpha() or ch.isspace() for ch in text)
    if prose / len(text) < MIN_PROSE_FRACTION:
        return False
    lines = [line.lstrip() for line in text.splitlines() if line.strip()]
    prompts = sum(line.startswith((">>>", "...")) for line in lines)
    return prompts / max(1, len(lines)) <= MAX_PROMPT_LINE_FRACTION


def help_topic_documents() -> list[dict]:
    from pydoc_data.topics import topics

    return [{"source": f"pydoc_data.topics:{key}", "text": topics[key].strip()} for key in sorted(topics)]


def docstring_documents(root: Path, label: str, seen: set[str], skip_private: bool = False,
                        budget: int | None = None) -> list[dict]:
    """Prose-like docstrings not seen before, in sorted file order, stopping once `budget` characters are taken."""
    docs, total = [], 0
    for path in python_files(root, skip_private):
        if budget is not None and total >= budget:
            break
        source = read_source(path)
        if source is None:
            continue
        rel = path.relative_to(root).as_posix()
        for name, text in docstrings(source):
            if is_prose(text) and text not in seen:
                seen.add(text)
                docs.append({"source": f"{label}/{rel}:{name}", "text": text})
                total += len(text)
    return docs


def stdlib_root() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def build_english() -> tuple[list[dict], list[dict]]:
    """The documents and the list of what they came from (with versions and licences)."""
    seen: set[str] = set()
    docs = []
    for doc in help_topic_documents():  # two topics ('else' and 'if') share one text: keep it once
        if doc["text"] not in seen:
            seen.add(doc["text"])
            docs.append(doc)
    version = platform.python_version()
    origins = [{"source": "CPython help topics (pydoc_data.topics)", "version": version, "licence": "PSF-2.0"}]
    docs += docstring_documents(stdlib_root(), "stdlib", seen)
    origins.append({"source": "CPython standard library docstrings", "version": version, "licence": "PSF-2.0"})
    site = Path(sysconfig.get_paths()["purelib"])
    for dist, folder, licence in PACKAGES:
        budget = TARGET_CHARS - sum(len(d["text"]) for d in docs)
        if budget <= 0:
            break
        docs += docstring_documents(site / folder, folder, seen, skip_private=True, budget=budget)
        origins.append({"source": f"{dist} docstrings", "version": metadata.version(dist), "licence": licence})
    return docs, origins


def build_python_code() -> tuple[list[dict], list[dict]]:
    root = stdlib_root()
    files = []
    for path in python_files(root):
        source = read_source(path)
        if source is not None and 0 < len(source) <= CODE_MAX_FILE_CHARS:
            files.append({"source": f"stdlib/{path.relative_to(root).as_posix()}", "text": source})
    random.Random(CODE_SEED).shuffle(files)
    chosen, total = [], 0
    for doc in files:
        if total >= CODE_TARGET_CHARS:
            break
        chosen.append(doc)
        total += len(doc["text"])
    chosen.sort(key=lambda d: d["source"])
    origins = [{"source": "CPython standard library sources (seeded random subset of files)",
                "version": platform.python_version(), "licence": "PSF-2.0"}]
    return chosen, origins


def serialise(docs: list[dict]) -> bytes:
    lines = [json.dumps({"source": d["source"], "text": d["text"]}, ensure_ascii=False, sort_keys=True) for d in docs]
    return ("\n".join(lines) + "\n").encode("utf-8")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="rebuild in memory and compare with the manifest")
    args = parser.parse_args(argv)
    manifest_path = DATA / "corpus_manifest.json"
    manifest = {"built_with": {"python": platform.python_version(), "implementation": sys.implementation.name},
                "corpora": {}}
    for name, build in (("english", build_english), ("python-code", build_python_code)):
        docs, origins = build()
        raw = serialise(docs)
        packed = gzip.compress(raw, compresslevel=9, mtime=0)
        file = f"{name}.jsonl.gz"
        manifest["corpora"][name] = {
            "file": file, "sha256": sha256(packed), "content_sha256": sha256(raw), "documents": len(docs),
            "characters": sum(len(d["text"]) for d in docs), "utf8_bytes": sum(len(d["text"].encode()) for d in docs),
            "compressed_bytes": len(packed), "origins": origins,
        }
        print(f"{name}: {len(docs)} documents, {manifest['corpora'][name]['characters']:,} characters, "
              f"{len(packed):,} bytes compressed, content sha256 {sha256(raw)}")
        if not args.check:
            (DATA / file).write_bytes(packed)
    if args.check:
        committed = json.loads(manifest_path.read_text())["corpora"]
        same = all(committed[n]["content_sha256"] == manifest["corpora"][n]["content_sha256"] for n in committed)
        print("content identical to the committed corpus" if same else "content DIFFERS from the committed corpus")
        return 0 if same else 1
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
