"""Serve a model over the OpenAI API: python -m minimodels.serving --model course-llama --port 8000

Then any OpenAI client works against it, for example
    openai.OpenAI(base_url="http://127.0.0.1:8000/v1", api_key="unused").completions.create(
        model="course-llama", prompt="The list", max_tokens=32)
"""

from __future__ import annotations

import argparse
import sys

import torch
import uvicorn

from minimodels.runtime import pick_device
from minimodels.serving.engine import LLMEngine
from minimodels.serving.served_models import SERVED_MODELS, load_served_model
from minimodels.serving.server import create_app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="OpenAI-compatible server over the course's paged-KV engine")
    parser.add_argument("--model", default="course-llama", choices=SERVED_MODELS)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--device", default=None, help="cpu, cuda, ... (default: CUDA if present)")
    parser.add_argument("--block-size", type=int, default=16)
    parser.add_argument("--num-blocks", type=int, default=None, help="KV blocks (default: max-num-seqs full contexts)")
    parser.add_argument("--max-num-seqs", type=int, default=64)
    parser.add_argument("--max-num-batched-tokens", type=int, default=2048)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        model, tokenizer = load_served_model(args.model, pick_device(args.device))
        engine = LLMEngine(model, tokenizer, block_size=args.block_size, num_blocks=args.num_blocks,
                           max_num_seqs=args.max_num_seqs, max_num_batched_tokens=args.max_num_batched_tokens)
    except (TypeError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"serving {args.model} on http://{args.host}:{args.port}/v1 ({engine.block_manager.num_blocks} KV blocks "
          f"of {args.block_size} tokens)", flush=True)
    uvicorn.run(create_app(engine, args.model), host=args.host, port=args.port, log_level="info")
    return 0


if __name__ == "__main__":
    sys.exit(main())
