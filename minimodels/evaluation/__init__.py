"""Evaluating language models: perplexity, BLEU, ROUGE and multiple-choice log-likelihood.

    from minimodels.evaluation import perplexity, corpus_bleu, sentence_bleu, rouge, score_choices

BLEU equals sacrebleu's and ROUGE equals rouge-score's (tests/test_bleu.py, tests/test_rouge.py).
"""

from minimodels.evaluation.bleu import BleuStats, bleu_from_stats, corpus_bleu, sentence_bleu, tokenize_13a
from minimodels.evaluation.choice import ChoiceScores, score_choices
from minimodels.evaluation.perplexity import (
    PerplexityResult,
    TokenNLL,
    bits_per_byte,
    entropy_bits,
    nats_to_bits,
    perplexity,
    token_nll,
)
from minimodels.evaluation.rouge import Score, rouge, rouge_tokenize

__all__ = [
    "BleuStats", "ChoiceScores", "PerplexityResult", "Score", "TokenNLL", "bits_per_byte", "bleu_from_stats",
    "corpus_bleu", "entropy_bits", "nats_to_bits", "perplexity", "rouge", "rouge_tokenize", "score_choices",
    "sentence_bleu", "token_nll", "tokenize_13a",
]
