"""Retrieval: sentence embeddings and the contrastive loss that trains them."""

from minimodels.retrieval.contrastive import fine_tune_mnrl, mnrl_loss
from minimodels.retrieval.embeddings import SentenceEncoder

__all__ = ["SentenceEncoder", "fine_tune_mnrl", "mnrl_loss"]
