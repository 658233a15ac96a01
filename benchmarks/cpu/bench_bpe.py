"""BPE training time: the course's pure-Python incremental trainer against Hugging Face `tokenizers` (Rust).

Two workloads: 130 kB of English at vocabulary 500, and the whole English train split at 4096 (the course
vocabulary). Both trainers run on one core (RAYON_NUM_THREADS=1 for tokenizers) on the same documents with
GPT-2's byte-level pre-tokenization. Prints seconds and the ratio, plus the bytes per token each
vocabulary reaches on the validation split (the two break ties between equal counts differently, so their
merges can differ slightly).

    python -m benchmarks.cpu.bench_bpe
"""

from __future__ import annotations

import os
import time

os.environ.setdefault("RAYON_NUM_THREADS", "1")  # before tokenizers starts its thread pool

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers  # noqa: E402

from minimodels.text.bpe import BPETokenizer  # noqa: E402
from minimodels.text.corpus import load_corpus, load_documents  # noqa: E402

EOT = "<|endoftext|>"


def train_hf(texts: list[str], vocab_size: int, specials: list[str]) -> Tokenizer:
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), min_frequency=0)
    tokenizer.train_from_iterator(texts, trainer)
    return tokenizer


def timed(fn, *args):
    start = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - start


def main() -> None:
    val_text = "\n\n".join(load_documents("english", "val"))
    val_bytes = len(val_text.encode("utf-8"))
    workloads = [("130 kB help topics, vocab 500", [load_corpus(max_chars=130_000)], 500, []),
                 ("english train split, vocab 4096", load_documents("english", "train"), 4096, [EOT])]
    print(f"{'workload':34s} {'ours s':>8s} {'HF s':>8s} {'ours/HF':>8s} {'ours B/tok':>11s} {'HF B/tok':>9s}")
    for name, texts, vocab_size, specials in workloads:
        ours, t_ours = timed(BPETokenizer.train, texts, vocab_size, specials)
        hf, t_hf = timed(train_hf, texts, vocab_size, specials)
        ours_bpt = val_bytes / len(ours.encode(val_text))
        hf_bpt = val_bytes / len(hf.encode(val_text).ids)
        print(f"{name:34s} {t_ours:8.2f} {t_hf:8.2f} {t_ours / t_hf:8.1f} {ours_bpt:11.3f} {hf_bpt:9.3f}", flush=True)
        print(f"{'':34s} ours: {len(ours.merges)} merges, vocab {ours.vocab_size}; HF vocab {hf.get_vocab_size()}")


if __name__ == "__main__":
    main()
