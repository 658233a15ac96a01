"""Whole models, one file each: GPT, Llama (and Mistral, Mixtral), Mamba, seq2seq."""

from minimodels.models.gpt import GPT, GPTConfig
from minimodels.models.llama import Llama, LlamaConfig
from minimodels.models.mamba import MambaConfig, MambaLM
from minimodels.models.seq2seq import Seq2Seq, Seq2SeqConfig

__all__ = ["GPT", "GPTConfig", "Llama", "LlamaConfig", "MambaConfig", "MambaLM", "Seq2Seq", "Seq2SeqConfig"]
