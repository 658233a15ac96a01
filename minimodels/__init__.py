"""Small language-model modules of the course, each tested against the library practitioners use.

    from minimodels import GPT, GPTConfig, from_hf, train, TrainConfig, generate

The subpackages follow the course: `text`, `layers`, `models`, `hf` (the only one that imports
transformers), `generation`, `training`, and one per later lesson. The names below are re-exported so
that the most used ones are one import away.
"""

from minimodels.generation import KVCache, RollingKVCache, generate, generate_cached, generate_recurrent, new_cache
from minimodels.hf import from_hf
from minimodels.models import GPT, GPTConfig, Llama, LlamaConfig, MambaConfig, MambaLM, Seq2Seq, Seq2SeqConfig
from minimodels.runtime import pick_device, seed_everything
from minimodels.text import BPETokenizer, CharTokenizer, load_corpus, load_documents
from minimodels.training import (
    BatchSampler,
    CharDataset,
    History,
    TrainConfig,
    estimate_loss,
    load_checkpoint,
    save_checkpoint,
    train,
    train_val_split,
)

__all__ = [
    "BPETokenizer", "BatchSampler", "CharDataset", "CharTokenizer", "GPT", "GPTConfig", "History", "KVCache", "Llama",
    "LlamaConfig", "MambaConfig", "MambaLM", "RollingKVCache", "Seq2Seq", "Seq2SeqConfig", "TrainConfig",
    "estimate_loss", "from_hf", "generate", "generate_cached", "generate_recurrent", "load_checkpoint",
    "load_corpus", "load_documents", "new_cache", "pick_device", "save_checkpoint", "seed_everything", "train",
    "train_val_split",
]
