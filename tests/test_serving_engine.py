"""LLMEngine against plain decoding: greedy outputs equal `generate_cached` and Hugging Face `generate`
token for token (one prompt, a batch of 32 mixed lengths, forced preemption, prefix-cache hits, block-size
multiples, a fully cached prompt, chunked prefill, sliding window, mixture of experts); no block leaks;
stop conditions; seeded sampling; clear errors."""

import pytest
import torch
from transformers import LlamaConfig as HFLlamaConfig
from transformers import LlamaForCausalLM

from minimodels import CharTokenizer, Llama, LlamaConfig, from_hf, generate_cached
from minimodels.serving import LLMEngine, PromptTooLongError, SamplingParams

VOCAB = 64


def peaked(model):
    """Larger weights than the init: peaked logits, so greedy choices are clear (no near-ties)."""
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                p.normal_(0.0, 0.15)
    return model.eval()


def tiny_llama(seed=0, **overrides) -> Llama:
    torch.manual_seed(seed)
    values = dict(vocab_size=VOCAB, dim=32, n_layers=2, n_heads=4, n_kv_heads=2, max_seq_len=160)
    return peaked(Llama(LlamaConfig(**(values | overrides))))


@pytest.fixture(scope="module")
def model():
    return tiny_llama()


def prompts(n, lo=1, hi=70, seed=1):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(lo, hi, (n,), generator=g).tolist()
    return [torch.randint(0, VOCAB, (length,), generator=g).tolist() for length in lengths]


def reference(model, prompt, n, **sampling):
    """New tokens of plain cached decoding (greedy unless sampling arguments are given)."""
    ids = torch.tensor([prompt])
    out = generate_cached(model, ids, n, **(sampling or {"greedy": True}))
    return out[0, len(prompt):].tolist()


def assert_all_free(engine):
    assert not engine.has_unfinished_requests()
    assert engine.block_manager.num_free_blocks == engine.block_manager.num_blocks
    assert all(b.ref_count == 0 for b in engine.block_manager.blocks)


def test_one_prompt_equals_generate_cached(model):
    prompt = prompts(1)[0]
    engine = LLMEngine(model)
    assert engine.generate([prompt], SamplingParams(max_tokens=24)) == [reference(model, prompt, 24)]
    assert_all_free(engine)


def test_32_prompts_of_mixed_lengths_in_one_batch(model):
    batch = prompts(32)
    lengths = [5 + i % 17 for i in range(32)]  # different output lengths too
    engine = LLMEngine(model, max_num_batched_tokens=512)
    outs = engine.generate(batch, [SamplingParams(max_tokens=n) for n in lengths])
    assert outs == [reference(model, p, n) for p, n in zip(batch, lengths, strict=True)]
    assert engine.num_steps < sum(lengths) / 4  # decoded together, not one after another
    assert_all_free(engine)


def test_preemption_forced_by_a_tiny_pool_keeps_the_outputs(model):
    batch = prompts(12, lo=10, hi=40, seed=2)
    engine = LLMEngine(model, num_blocks=6, block_size=8, max_num_batched_tokens=64)  # 48 slots
    outs = engine.generate(batch, SamplingParams(max_tokens=8))
    assert engine.scheduler.num_preemptions > 0
    assert outs == [reference(model, p, 8) for p in batch]
    assert_all_free(engine)


def test_prefix_cache_hits_on_a_shared_prefix(model):
    shared = prompts(1, lo=40, hi=41, seed=3)[0]  # 40 tokens: 2 full blocks of 16 and a partial one
    batch = [shared + tail for tail in prompts(6, lo=1, hi=20, seed=4)]
    engine = LLMEngine(model)
    first = engine.generate(batch[:1], SamplingParams(max_tokens=10))
    engine.scheduler.prefix_hit_tokens = 0
    rest = engine.generate(batch[1:], SamplingParams(max_tokens=10))
    assert engine.scheduler.prefix_hit_tokens == 5 * 32  # every later prompt reused the 2 full blocks
    assert first + rest == [reference(model, p, 10) for p in batch]
    assert_all_free(engine)


def test_prompts_sharing_a_prefix_in_the_same_batch_share_blocks(model):
    shared = prompts(1, lo=48, hi=49, seed=5)[0]
    batch = [shared + tail for tail in prompts(4, lo=3, hi=9, seed=6)]
    engine = LLMEngine(model)
    engine.generate(batch[:1], SamplingParams(max_tokens=2))  # the prefix enters the cache
    ids = [engine.add_request(p, SamplingParams(max_tokens=6)) for p in batch]
    engine.step()
    tables = [engine.requests[i].block_table for i in ids]
    assert all(t[:3] == tables[0][:3] for t in tables)  # 3 full blocks of the prefix, one copy in memory
    assert engine.block_manager.blocks[tables[0][0]].ref_count == 4
    outs = {}
    while engine.has_unfinished_requests():
        outs |= {o.request_id: o.token_ids for o in engine.step() if o.finished}
    assert [outs[i] for i in ids] == [reference(model, p, 6) for p in batch]
    assert_all_free(engine)


@pytest.mark.parametrize("length", [16, 32, 48])
def test_prompt_an_exact_multiple_of_the_block_size(model, length):
    prompt = prompts(1, lo=length, hi=length + 1, seed=length)[0]
    engine = LLMEngine(model, block_size=16)
    assert engine.generate([prompt], SamplingParams(max_tokens=20)) == [reference(model, prompt, 20)]
    assert_all_free(engine)


def test_a_fully_cached_prompt_recomputes_only_its_last_token(model):
    prompt = prompts(1, lo=32, hi=33, seed=7)[0]  # two full blocks, both cached after the first run
    engine = LLMEngine(model, block_size=16)
    first = engine.generate([prompt], SamplingParams(max_tokens=12))
    rid = engine.add_request(prompt, SamplingParams(max_tokens=12))
    out = engine.step()
    assert engine.last_schedule.chunks[0].num_tokens == 1 and out[0].num_cached_tokens == 31
    while engine.has_unfinished_requests():
        out += engine.step()
    again = [o for o in out if o.request_id == rid and o.finished][0].token_ids
    assert first == [again] == [reference(model, prompt, 12)]
    assert_all_free(engine)


def test_two_identical_prompts_at_once_copy_on_write(model):
    prompt = prompts(1, lo=32, hi=33, seed=8)[0]
    engine = LLMEngine(model, block_size=16)
    engine.generate([prompt], SamplingParams(max_tokens=3))  # cached
    ids = [engine.add_request(prompt, SamplingParams(max_tokens=9)) for _ in range(2)]
    outs = {}
    engine.step()  # admits both: each recomputes only token 31, into its own copy of the cached block 1
    assert [c.num_tokens for c in engine.last_schedule.chunks] == [1, 1]
    assert len(engine.last_schedule.copies) == 2
    tables = [engine.requests[i].block_table for i in ids]
    assert tables[0][0] == tables[1][0] and tables[0][1] != tables[1][1]
    while engine.has_unfinished_requests():
        outs |= {o.request_id: o.token_ids for o in engine.step() if o.finished}
    assert [outs[i] for i in ids] == [reference(model, prompt, 9)] * 2
    assert_all_free(engine)


def test_chunked_prefill_under_a_small_token_budget(model):
    batch = prompts(6, lo=30, hi=70, seed=9)
    engine = LLMEngine(model, max_num_batched_tokens=12)
    outs = engine.generate(batch, SamplingParams(max_tokens=7))
    assert outs == [reference(model, p, 7) for p in batch]
    assert_all_free(engine)


def test_requests_joining_while_others_decode(model):
    batch = prompts(8, seed=10)
    engine = LLMEngine(model)
    ids, outs = [], {}
    for i, prompt in enumerate(batch):  # one new request every two steps
        ids.append(engine.add_request(prompt, SamplingParams(max_tokens=10 + i)))
        for _ in range(2):
            outs |= {o.request_id: o.token_ids for o in engine.step() if o.finished}
    while engine.has_unfinished_requests():
        outs |= {o.request_id: o.token_ids for o in engine.step() if o.finished}
    assert [outs[i] for i in ids] == [reference(model, p, 10 + i) for i, p in enumerate(batch)]


@pytest.mark.parametrize("overrides", [{"sliding_window": 6}, {"n_experts": 4, "top_k": 2}, {"n_kv_heads": 1}],
                         ids=["mistral-window", "mixtral-moe", "mqa"])
def test_other_llama_variants_equal_generate_cached(overrides):
    m = tiny_llama(seed=1, **overrides)
    batch = prompts(6, lo=3, hi=40, seed=11)
    engine = LLMEngine(m, block_size=4, num_blocks=40, max_num_batched_tokens=32)  # preemption and chunks too
    assert engine.generate(batch, SamplingParams(max_tokens=14)) == [reference(m, p, 14) for p in batch]
    assert_all_free(engine)


@pytest.fixture(scope="module")
def hf_pair():
    """A tiny random Hugging Face LlamaForCausalLM, the course Llama converted from it, and HF greedy decoding."""
    torch.manual_seed(0)
    config = HFLlamaConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                           num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=160,
                           bos_token_id=None, eos_token_id=None, pad_token_id=None)
    hf = peaked(LlamaForCausalLM(config))
    done = {}

    def hf_greedy(prompt, n):
        key = (tuple(prompt), n)
        if key not in done:
            ids = torch.tensor([prompt])
            with torch.no_grad():
                out = hf.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=n, min_new_tokens=n,
                                  do_sample=False, eos_token_id=None, pad_token_id=0)
            done[key] = out[0, len(prompt):].tolist()
        return done[key]

    return from_hf(hf), hf_greedy


SHARED = prompts(1, lo=32, hi=33, seed=12)[0]  # exactly two blocks of 16


@pytest.mark.parametrize("case", ["one-prompt", "32-mixed", "preemption", "prefix-hits", "fully-cached"])
def test_greedy_outputs_equal_hugging_face_generate(hf_pair, case):
    ours, hf_greedy = hf_pair
    n = 6
    if case == "one-prompt":
        batch, engine = prompts(1, seed=13), LLMEngine(ours)
    elif case == "32-mixed":
        batch, engine = prompts(32, seed=14), LLMEngine(ours, max_num_batched_tokens=256)
    elif case == "preemption":
        batch, engine = prompts(8, lo=20, hi=40, seed=15), LLMEngine(ours, block_size=8, num_blocks=6)
    elif case == "prefix-hits":
        batch = [SHARED + tail for tail in prompts(4, lo=1, hi=12, seed=16)]
        engine = LLMEngine(ours)
        engine.generate(batch[:1], SamplingParams(max_tokens=n))  # the shared blocks enter the cache
    else:  # the same block-multiple prompt twice, in turn: the second is entirely in the cache
        batch, engine = [SHARED], LLMEngine(ours)
        assert engine.generate(batch, SamplingParams(max_tokens=n)) == [hf_greedy(SHARED, n)]
    outs = engine.generate(batch, SamplingParams(max_tokens=n))
    assert outs == [hf_greedy(p, n) for p in batch]
    if case == "preemption":
        assert engine.scheduler.num_preemptions > 0
    if case in ("prefix-hits", "fully-cached"):
        assert engine.scheduler.prefix_hit_tokens == len(batch) * 32 - (case == "fully-cached")
    assert_all_free(engine)


@pytest.mark.gpu
def test_the_engine_on_cuda_equals_generate_cached_on_cuda():
    m = tiny_llama(seed=2, sliding_window=12).cuda()
    batch = prompts(10, lo=1, hi=60, seed=17) + [SHARED, SHARED]
    engine = LLMEngine(m, block_size=8, num_blocks=20, max_num_batched_tokens=48)  # preemption, chunks, hits
    outs = engine.generate(batch, SamplingParams(max_tokens=12))
    expected = [generate_cached(m, torch.tensor([p], device="cuda"), 12, greedy=True)[0, len(p):].tolist()
                for p in batch]
    assert outs == expected and engine.scheduler.num_preemptions > 0
    assert_all_free(engine)


def test_aborted_requests_free_their_blocks(model):
    engine = LLMEngine(model, num_blocks=8)  # 2 blocks per prompt: 4 run, 2 wait
    running = engine.add_request(prompts(1, lo=30, hi=31)[0], SamplingParams(max_tokens=50))
    others = [engine.add_request(p, SamplingParams(max_tokens=50)) for p in prompts(5, lo=30, hi=31, seed=2)]
    for _ in range(3):
        engine.step()
    assert engine.block_manager.num_free_blocks == 0 and len(engine.scheduler.waiting) == 2
    assert engine.abort(running) and not engine.abort(running)
    for rid in others:
        engine.abort(rid)
    assert_all_free(engine)
    assert engine.step() == []


def test_stop_token_and_stop_string_and_max_tokens(model):
    prompt = prompts(1, seed=14)[0]
    free_run = reference(model, prompt, 30)
    chars = "".join(chr(ord("0") + i) for i in range(VOCAB))  # 64 printable characters, one per id
    engine = LLMEngine(model, CharTokenizer(chars))
    stop_id = free_run[5]
    first = free_run.index(stop_id)
    rid = engine.add_request(prompt, SamplingParams(max_tokens=30, stop_token_ids=[stop_id]))
    outs = []
    while engine.has_unfinished_requests():
        outs += engine.step()
    last = outs[-1]
    assert last.request_id == rid and last.finish_reason == "stop"
    assert last.token_ids == free_run[:first + 1]  # the stop token is kept in the ids, not in the text
    assert last.text == "".join(chars[t] for t in free_run[:first])
    text = "".join(chars[t] for t in free_run)
    stop = text[8:11]
    cut = text.index(stop)
    [new] = engine.generate([prompt], SamplingParams(max_tokens=30, stop=[stop, "never seen"]))
    assert new == free_run[:cut + 3]  # generation ends on the token that completes the stop string
    engine.add_request(prompt, SamplingParams(max_tokens=30, stop=stop))
    outs = []
    while engine.has_unfinished_requests():
        outs += engine.step()
    assert outs[-1].text == text[:cut] and outs[-1].finish_reason == "stop"  # the stop string is cut off
    texts = [o.text for o in outs]
    assert all(b.startswith(a) for a, b in zip(texts, texts[1:], strict=False))  # streamed text only grows
    assert all(stop not in t for t in texts)
    engine.add_request(prompt, SamplingParams(max_tokens=4))
    outs = []
    while engine.has_unfinished_requests():
        outs += engine.step()
    assert [o.finished for o in outs] == [False, False, False, True] and outs[-1].finish_reason == "length"


def test_seeded_sampling_equals_generate_cached_with_the_same_seed(model):
    batch = prompts(4, seed=15)
    params = [SamplingParams(max_tokens=20, temperature=0.9, top_k=20, top_p=0.9, seed=100 + i) for i in range(4)]
    engine = LLMEngine(model, max_num_batched_tokens=32)
    outs = engine.generate(batch, params)
    expected = [reference(model, p, 20, temperature=0.9, top_k=20, top_p=0.9, seed=100 + i)
                for i, p in enumerate(batch)]
    assert outs == expected
    assert outs != [reference(model, p, 20) for p in batch]  # it did sample


@pytest.mark.parametrize("kwargs, match", [
    ({"max_tokens": 0}, r"max_tokens=0: must be an int >= 1"),
    ({"temperature": -0.5}, r"temperature=-0.5: must be >= 0"),
    ({"temperature": float("nan")}, r"temperature=nan: must be a finite number"),
    ({"top_p": 0.0}, r"top_p=0.0: must be in \(0, 1\]"),
    ({"top_k": -2}, r"top_k=-2: must be an int >= 1, or 0 / -1"),
    ({"seed": -1}, r"seed=-1: must be None or an int >= 0"),
    ({"stop": [""]}, r"stop=\[''\]: must be None, a non-empty string"),
    ({"stop_token_ids": [-1]}, r"stop_token_ids=\[-1\]: must be None or a list of ints >= 0"),
])
def test_sampling_params_validate(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SamplingParams(**kwargs)


def test_bad_requests_get_clear_errors(model):
    engine = LLMEngine(model, num_blocks=4)
    with pytest.raises(ValueError, match="the prompt is empty"):
        engine.add_request([])
    with pytest.raises(ValueError, match=r"token id 64 is outside the vocabulary \[0, 64\)"):
        engine.add_request([1, 64])
    with pytest.raises(PromptTooLongError, match="maximum context length is 160 tokens.*you requested 170"):
        engine.add_request([1] * 150, SamplingParams(max_tokens=20))
    with pytest.raises(PromptTooLongError, match="more than the whole pool of 64"):
        engine.add_request([1] * 60, SamplingParams(max_tokens=20))
    with pytest.raises(ValueError, match="stop strings need the engine's tokenizer"):
        engine.add_request([1], SamplingParams(stop="x"))
    with pytest.raises(TypeError, match="a text prompt needs the engine's tokenizer"):
        engine.add_request("hello")
    with pytest.raises(TypeError, match="params must be a SamplingParams"):
        engine.add_request([1], {"max_tokens": 3})
    with pytest.raises(TypeError, match="the serving engine runs the course Llama family"):
        LLMEngine(torch.nn.Linear(2, 2), max_model_len=8)
    with pytest.raises(ValueError, match="LLMEngine.block_size must be a positive int, got 0"):
        LLMEngine(model, block_size=0)
    with pytest.raises(ValueError, match="LLMEngine.max_num_seqs must be a positive int, got 0"):
        LLMEngine(model, max_num_seqs=0)
    with pytest.raises(ValueError, match="BlockManager.num_blocks must be a positive int, got 0"):
        LLMEngine(model, num_blocks=0)
    with pytest.raises(ValueError, match="max_num_batched_tokens must be a positive int"):
        LLMEngine(model, max_num_batched_tokens=0)
    with pytest.raises(TypeError, match=r"tokenizer must have encode\(text\) -> ids and decode"):
        LLMEngine(model, tokenizer="abc")
    assert not engine.has_unfinished_requests()
