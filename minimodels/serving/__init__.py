"""Serving (notebook 16): a vLLM-style engine over a paged KV cache, behind an OpenAI-compatible server.

    from minimodels.serving import LLMEngine, SamplingParams
    engine = LLMEngine(model, tokenizer)
    new_ids = engine.generate(prompts, SamplingParams(max_tokens=32))

block_manager (blocks, reference counts, prefix caching, copy-on-write), scheduler (continuous batching,
chunked prefill, preemption), paged_attention, model_runner, engine; server (FastAPI) with
`python -m minimodels.serving`. Kwon et al. 2023, PagedAttention / vLLM, arXiv:2309.06180.
The function `paged_attention` is not re-exported here, so that the name keeps meaning its module.
"""

from minimodels.serving.block_manager import BlockManager
from minimodels.serving.engine import LLMEngine, PromptTooLongError, RequestOutput
from minimodels.serving.paged_attention import PagedBatch, paged_batch
from minimodels.serving.sampling import ParameterError, SamplingParams
from minimodels.serving.scheduler import Scheduler

__all__ = ["BlockManager", "LLMEngine", "PagedBatch", "ParameterError", "PromptTooLongError", "RequestOutput",
           "SamplingParams", "Scheduler", "paged_batch"]
