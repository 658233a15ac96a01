"""Vocabulary expansion with staged freezing (EEVE: Kim et al., 2024, arXiv:2402.14714).

A tokenizer trained on English cuts Python source into many short pieces ('    ' + 'return' may be three
tokens, 'self' two). Expanding the vocabulary for the new domain makes sequences shorter (cheaper to run,
more context in the same window):

    new_tok = extend_tokenizer(tok, python_texts, n_new_tokens=256)  # BPE continued on the new domain
    expand_vocabulary(model, tok, new_tok)                           # new embedding / output rows
    handle = set_stage(model, "new_rows", n_old=tok.vocab_size)      # train only the new rows first
    ... train ...; handle.remove(); set_stage(model, "all", ...)     # then unfreeze in stages

The new merges come after the old ones, so every old merge still applies first and old ids keep their
meaning; a new token's rows start as the mean of the rows of the old tokens it is made of, so the model
sees roughly what it saw before the merge. EEVE trains in seven stages, from the new input embeddings
alone up to all parameters; the stages here are the same idea condensed (see STAGES). Rows are frozen by a
gradient mask, so train a row stage with weight_decay=0 and a fresh optimizer (decay would still shrink
masked rows, old momentum would still move them).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

import torch
from torch import nn

from minimodels.peft.params import freeze

STAGES = {
    "new_input": "only the new rows of the input embedding",
    "new_output": "only the new rows of the output head",
    "new_rows": "the new rows of the input embedding and of the output head",
    "embeddings": "every row of the input embedding and of the output head",
    "all": "every parameter",
}


def _tokenizer_class(tokenizer):
    for attr in ("vocab", "merges", "special_tokens", "encode"):
        if not hasattr(tokenizer, attr):
            raise TypeError(f"tokenizer must be a BPETokenizer (vocab, merges, special_tokens, encode); "
                            f"{type(tokenizer).__name__} has no {attr!r}")
    return type(tokenizer)


def extend_tokenizer(tokenizer, texts: str | Iterable[str], n_new_tokens: int):
    """A new BPETokenizer: `tokenizer` plus up to `n_new_tokens` merges learned on `texts` (the new domain).

    Each distinct pre-token of `texts` is first encoded by the old tokenizer, then BPE continues from there
    (the most frequent adjacent pair, merged, repeatedly). Old ids are unchanged; new ids follow the last one.
    """
    cls = _tokenizer_class(tokenizer)
    if not isinstance(n_new_tokens, int) or n_new_tokens < 1:
        raise ValueError(f"n_new_tokens must be an int >= 1, got {n_new_tokens!r}")
    texts = [texts] if isinstance(texts, str) else list(texts)
    if not any(texts):
        raise ValueError("texts is empty: new merges are learned from the new domain's text")
    from minimodels.text.bpe import pretokenize

    specials = set(tokenizer.special_tokens)
    words: Counter[str] = Counter()
    for text in texts:
        for special in specials:
            text = text.replace(special, "\n")
        words.update(pretokenize(text))
    pieces = list(words)
    ids = [tokenizer.encode(p) for p in pieces]  # each pre-token under the old merges
    vocab = dict(tokenizer.vocab)
    distinct = len(set(vocab.values()))
    new_merges = cls._learn_merges(ids, [words[p] for p in pieces], vocab, distinct + n_new_tokens)
    return cls(vocab, list(tokenizer.merges) + new_merges, tokenizer.special_tokens)


def new_token_pieces(old_tokenizer, new_tokenizer) -> dict[int, list[int]]:
    """For every id the new tokenizer adds: the old ids its bytes are made of (following the new merges)."""
    old_size = len(old_tokenizer.vocab)
    if any(new_tokenizer.vocab.get(i) != b for i, b in old_tokenizer.vocab.items()):
        raise ValueError("new_tokenizer must keep every id of old_tokenizer with the same bytes "
                         "(a tokenizer from extend_tokenizer)")
    special_ids = set(getattr(new_tokenizer, "special_ids", {}).values())
    id_of = {b: i for i, b in sorted(new_tokenizer.vocab.items(), reverse=True) if i not in special_ids}
    made_of = {}
    for a, b in new_tokenizer.merges[len(old_tokenizer.merges):]:
        made_of.setdefault(id_of[a + b], (id_of[a], id_of[b]))

    def expand(i: int) -> list[int]:
        if i < old_size:
            return [i]
        a, b = made_of[i]
        return expand(a) + expand(b)

    return {i: expand(i) for i in range(old_size, len(new_tokenizer.vocab))}


def expand_vocabulary(model: nn.Module, old_tokenizer, new_tokenizer, output_init: str = "mean") -> nn.Module:
    """Grow model.embed and model.lm_head to the new vocabulary, in place.

    A new row starts as the mean of the rows of its old sub-tokens; output_init="first" starts a new output
    row as its first sub-token's row instead (EEVE's choice: the model first predicts the new token where it
    predicted its first piece). A tied head stays tied.
    """
    if output_init not in ("mean", "first"):
        raise ValueError(f"output_init must be 'mean' or 'first', got {output_init!r}")
    embed, head = getattr(model, "embed", None), getattr(model, "lm_head", None)
    if not isinstance(embed, nn.Embedding) or not isinstance(head, nn.Linear):
        raise TypeError(f"{type(model).__name__} needs an nn.Embedding `embed` and an nn.Linear `lm_head`")
    old_size = len(old_tokenizer.vocab)
    if embed.num_embeddings != old_size:
        raise ValueError(f"model.embed has {embed.num_embeddings} rows but old_tokenizer has {old_size} ids")
    tied = head.weight is embed.weight
    if tied and output_init == "first":
        raise ValueError("output_init='first' needs an untied lm_head (this model ties it to the embedding)")
    pieces = new_token_pieces(old_tokenizer, new_tokenizer)
    new_size = old_size + len(pieces)

    def grown(weight: torch.Tensor, first: bool) -> torch.Tensor:
        rows = [weight[p[0]] if first else weight[p].mean(dim=0) for p in pieces.values()]
        return torch.cat([weight.detach(), torch.stack(rows).detach()]) if rows else weight.detach().clone()

    new_embed = nn.Embedding(new_size, embed.embedding_dim, device=embed.weight.device, dtype=embed.weight.dtype)
    new_embed.weight = nn.Parameter(grown(embed.weight, False))
    new_head = nn.Linear(head.in_features, new_size, bias=False, device=head.weight.device, dtype=head.weight.dtype)
    new_head.weight = new_embed.weight if tied else nn.Parameter(grown(head.weight, output_init == "first"))
    model.embed, model.lm_head = new_embed, new_head
    if hasattr(model, "config") and hasattr(model.config, "vocab_size"):
        model.config.vocab_size = new_size
    return model


class StageHandle:
    """The gradient masks of one stage; remove() before setting the next stage."""

    def __init__(self, hooks: list):
        self._hooks = hooks

    def remove(self) -> None:
        for h in self._hooks:
            h.remove()
        self._hooks = []


def _row_mask(weight: torch.Tensor, n_old: int):
    def hook(grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone()
        grad[:n_old] = 0  # the old vocabulary's rows stay as they are
        return grad

    return weight.register_hook(hook)


def set_stage(model: nn.Module, stage: str, n_old: int) -> StageHandle:
    """Make trainable what `stage` names (see STAGES), freeze the rest; returns the handle of its row masks."""
    if stage not in STAGES:
        raise ValueError(f"stage must be one of {list(STAGES)}, got {stage!r}")
    embed, head = model.embed.weight, model.lm_head.weight
    if not isinstance(n_old, int) or not 0 < n_old <= embed.size(0):
        raise ValueError(f"n_old must be an int in [1, {embed.size(0)}] (the old vocabulary size), got {n_old!r}")
    tied = embed is head
    if tied and stage in ("new_input", "new_output"):
        raise ValueError(f"stage {stage!r} needs an untied lm_head; with tied embeddings use 'new_rows'")
    if stage == "all":
        for p in model.parameters():
            p.requires_grad_(True)
        return StageHandle([])
    freeze(model)
    trained = {"new_input": [embed], "new_output": [head], "new_rows": [embed, head],
               "embeddings": [embed, head]}[stage]
    hooks = []
    for weight in {id(w): w for w in trained}.values():  # a tied weight once
        weight.requires_grad_(True)
        if stage != "embeddings":
            hooks.append(_row_mask(weight, n_old))
    return StageHandle(hooks)
