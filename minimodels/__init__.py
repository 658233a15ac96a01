"""Small language-model modules of the course, each tested against the library practitioners use.

    from minimodels import GPT, GPTConfig, from_hf, train, TrainConfig, generate
"""

from minimodels.checkpoint import load_checkpoint, save_checkpoint
from minimodels.data import BatchSampler, CharDataset, CharTokenizer, load_corpus, train_val_split
from minimodels.decode import generate_cached
from minimodels.generate import generate
from minimodels.gpt import GPT, GPTConfig
from minimodels.hf import from_hf
from minimodels.kv_cache import KVCache, RollingKVCache, new_cache
from minimodels.llama import Llama, LlamaConfig
from minimodels.mamba import MambaConfig, MambaLM
from minimodels.runtime import pick_device, seed_everything
from minimodels.seq2seq import Seq2Seq, Seq2SeqConfig
from minimodels.train import History, TrainConfig, estimate_loss, train

__all__ = [
    "BatchSampler", "CharDataset", "CharTokenizer", "GPT", "GPTConfig", "History", "KVCache", "Llama",
    "LlamaConfig", "RollingKVCache", "TrainConfig", "estimate_loss", "from_hf", "generate", "generate_cached",
    "load_checkpoint", "load_corpus", "new_cache", "pick_device", "save_checkpoint", "seed_everything",
    "train", "train_val_split", "Seq2Seq", "Seq2SeqConfig", "MambaConfig", "MambaLM",
]
