"""The OpenAI-compatible server, driven by the real `openai` client against a live uvicorn on 127.0.0.1.

One server for the module (a free port, stopped at the end). Answers equal plain decoding of the same
prompt; streamed chunks join to the non-streamed text; 16 concurrent requests are all right; bad input
gets a 4xx with an OpenAI-style error body and the server keeps serving; a client that goes away
mid-stream has its request aborted and its blocks freed.
"""

import string
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest
import torch
from fastapi.testclient import TestClient

from minimodels import CharTokenizer, Llama, LlamaConfig, generate_cached
from minimodels.serving import LLMEngine
from minimodels.serving.chat import apply_chat_template
from minimodels.serving.server import BackgroundServer, create_app

MODEL = "tiny-llama"
CHARS = string.ascii_letters + string.digits + " .:\n"


@pytest.fixture(scope="module")
def served():
    tokenizer = CharTokenizer(CHARS)
    torch.manual_seed(0)
    model = Llama(LlamaConfig(vocab_size=tokenizer.vocab_size, dim=32, n_layers=2, n_heads=4, n_kv_heads=2,
                              max_seq_len=128)).eval()
    with torch.no_grad():  # peaked logits: clear greedy choices
        for p in model.parameters():
            if p.dim() > 1:
                p.normal_(0.0, 0.15)
    engine = LLMEngine(model, tokenizer, block_size=8, num_blocks=128)
    server = BackgroundServer(create_app(engine, MODEL))
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0, timeout=30)
    yield dict(server=server, engine=engine, model=model, tokenizer=tokenizer, client=client)
    server.stop()
    assert not server.thread.is_alive()


def expected_text(served, prompt: str, max_tokens: int, stop: str | None = None) -> str:
    """Plain greedy decoding of the prompt, decoded, cut before the stop string (as the API does)."""
    tok = served["tokenizer"]
    ids = torch.tensor([tok.encode(prompt)])
    text = tok.decode(generate_cached(served["model"], ids, max_tokens, greedy=True)[0, ids.size(1):].tolist())
    return text[:text.index(stop)] if stop and stop in text else text


def wait_until_idle(engine, timeout=10.0):
    deadline = time.monotonic() + timeout
    while engine.has_unfinished_requests() or engine.block_manager.num_free_blocks != engine.block_manager.num_blocks:
        assert time.monotonic() < deadline, "the engine did not go idle"
        time.sleep(0.02)


def test_models_and_health(served):
    models = served["client"].models.list()
    assert [m.id for m in models.data] == [MODEL]
    health = httpx.get(f"{served['server'].url}/health", timeout=10)
    assert health.status_code == 200 and health.json() == {"status": "ok"}


def test_completion_equals_plain_decoding(served):
    prompt = "The quick brown fox"
    out = served["client"].completions.create(model=MODEL, prompt=prompt, max_tokens=24, temperature=0)
    choice = out.choices[0]
    assert choice.text == expected_text(served, prompt, 24)
    assert choice.finish_reason == "length"
    assert (out.usage.prompt_tokens, out.usage.completion_tokens) == (len(prompt), 24)
    assert out.object == "text_completion" and out.model == MODEL


def test_a_batch_of_prompts_gets_one_choice_each(served):
    prompts = ["abc", "Hello there", "x"]
    out = served["client"].completions.create(model=MODEL, prompt=prompts, max_tokens=6, temperature=0)
    assert [c.index for c in out.choices] == [0, 1, 2]
    assert [c.text for c in out.choices] == [expected_text(served, p, 6) for p in prompts]


def test_chat_completion_equals_decoding_the_templated_conversation(served):
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi there"}]
    out = served["client"].chat.completions.create(model=MODEL, messages=messages, max_tokens=20, temperature=0)
    prompt = apply_chat_template(messages)
    assert prompt == "System: Be brief.\nUser: Hi there\nAssistant:"
    assert out.choices[0].message.role == "assistant"
    assert out.choices[0].message.content == expected_text(served, prompt, 20, stop="\nUser:")
    assert out.object == "chat.completion"


def test_streamed_chunks_join_to_the_non_streamed_text(served):
    client, prompt = served["client"], "Streaming text "
    whole = client.completions.create(model=MODEL, prompt=prompt, max_tokens=30, temperature=0).choices[0].text
    chunks = list(client.completions.create(model=MODEL, prompt=prompt, max_tokens=30, temperature=0, stream=True))
    assert len(chunks) > 5 and "".join(c.choices[0].text for c in chunks) == whole
    assert chunks[-1].choices[0].finish_reason == "length"
    messages = [{"role": "user", "content": "Tell me"}]
    whole = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=25, temperature=0)
    stream = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=25, temperature=0,
                                            stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == whole.choices[0].message.content
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens


def test_the_event_stream_ends_with_done(served):
    body = {"model": MODEL, "prompt": "abc", "max_tokens": 5, "temperature": 0, "stream": True}
    with httpx.stream("POST", f"{served['server'].url}/v1/completions", json=body, timeout=30) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in response.iter_lines() if line]
    assert all(line.startswith("data: ") for line in lines) and lines[-1] == "data: [DONE]"


def test_16_concurrent_requests_are_all_right(served):
    client = served["client"]
    prompts = [f"Request number {i} says" for i in range(16)]
    lengths = [8 + i for i in range(16)]

    def ask(i):
        return client.completions.create(model=MODEL, prompt=prompts[i], max_tokens=lengths[i], temperature=0)

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(ask, range(16)))
    assert [a.choices[0].text for a in answers] == [expected_text(served, p, n) for p, n in zip(prompts, lengths,
                                                                                               strict=True)]
    wait_until_idle(served["engine"])


@pytest.mark.parametrize("overrides, status, words", [
    ({"max_tokens": 0}, 400, "max_tokens=0: must be an int >= 1"),
    ({"temperature": -1}, 400, "temperature=-1.0: must be >= 0"),
    ({"temperature": 3}, 400, "temperature=3.0: must be between 0 and 2"),
    ({"top_p": 0}, 400, "top_p=0.0: must be in (0, 1]"),
    ({"prompt": "x" * 200}, 400, "maximum context length is 128 tokens"),
    ({"prompt": "not in the vocabulary: \u00e9"}, 400, "cannot encode character"),
    ({"model": "gpt-17"}, 404, "The model `gpt-17` does not exist"),
    ({"n": 2}, 400, "one choice per prompt"),
], ids=["max_tokens", "temperature<0", "temperature>2", "top_p", "too-long", "bad-char", "unknown-model", "n"])
def test_bad_input_gets_a_clear_4xx_and_the_server_keeps_serving(served, overrides, status, words):
    args = {"model": MODEL, "prompt": "abc", "max_tokens": 4} | overrides
    with pytest.raises(openai.APIStatusError) as caught:
        served["client"].completions.create(**args)
    assert caught.value.status_code == status
    error = caught.value.body
    assert words in error["message"] and error["type"] == "invalid_request_error"
    if overrides.get("prompt", "").startswith("x"):
        assert (error["code"], error["param"]) == ("context_length_exceeded", "prompt")
    if "model" in overrides:
        assert error["code"] == "model_not_found"
    ok = served["client"].completions.create(model=MODEL, prompt="abc", max_tokens=4, temperature=0)
    assert ok.choices[0].text == expected_text(served, "abc", 4)


@pytest.mark.parametrize("body, words", [
    (b'{"model": "tiny-llama", "prompt": ', "could not parse the JSON body"),
    (b'{"model": "tiny-llama", "prompt": "a", "temperature": "hot"}', "temperature: Input should be a valid number"),
    (b'{"prompt": "a"}', "model: Field required"),
    (b'{"model": "tiny-llama", "messages": [{"role": "robot", "content": "hi"}]}', "messages[0].role='robot'"),
    (b'{"model": "tiny-llama", "messages": []}', "messages: List should have at least 1 item"),
], ids=["malformed-json", "wrong-type", "missing-field", "bad-role", "no-messages"])
def test_malformed_requests_get_a_400_with_an_openai_error_body(served, body, words):
    route = "chat/completions" if b"messages" in body else "completions"
    response = httpx.post(f"{served['server'].url}/v1/{route}", content=body,
                          headers={"content-type": "application/json"}, timeout=10)
    assert response.status_code == 400
    error = response.json()["error"]
    assert words in error["message"] and set(error) == {"message", "type", "param", "code"}
    assert httpx.get(f"{served['server'].url}/health", timeout=10).status_code == 200


def test_unknown_route_is_a_404_in_the_same_format(served):
    response = httpx.get(f"{served['server'].url}/v1/nothing-here", timeout=10)
    assert response.status_code == 404 and "Not Found" in response.json()["error"]["message"]


def test_a_client_that_disconnects_mid_stream_gets_its_request_aborted(served, monkeypatch):
    engine = served["engine"]
    wait_until_idle(engine)
    aborted, step, abort = [], engine.step, engine.abort

    def slow_step():  # a few ms per step, so the request is still running when the client leaves
        time.sleep(0.005)
        return step()

    def recording_abort(request_id):
        aborted.append((request_id, request_id in engine.requests))
        return abort(request_id)

    monkeypatch.setattr(engine, "step", slow_step)
    monkeypatch.setattr(engine, "abort", recording_abort)
    stream = served["client"].completions.create(model=MODEL, prompt="Long story", max_tokens=110,
                                                 temperature=0, stream=True)
    chunks = iter(stream)
    first = [next(chunks).choices[0].text for _ in range(3)]
    assert engine.has_unfinished_requests() and engine.block_manager.num_free_blocks < engine.block_manager.num_blocks
    stream.close()  # the client goes away
    wait_until_idle(engine)
    assert len(aborted) == 1 and aborted[0][1]  # aborted while still unfinished
    assert "".join(first) == expected_text(served, "Long story", 3)
    ok = served["client"].completions.create(model=MODEL, prompt="abc", max_tokens=4, temperature=0)
    assert ok.choices[0].text == expected_text(served, "abc", 4)


def test_the_tokenizers_end_of_text_token_ends_an_answer(served):
    prompt = "Once upon"
    free_run = expected_text(served, prompt, 20)
    end = free_run[6]  # the character generated 7th stands in for <|endoftext|>

    class WithEndOfText(CharTokenizer):
        special_ids = {"<|endoftext|>": served["tokenizer"].stoi[end]}

    tokenizer = WithEndOfText(CHARS)
    app = create_app(LLMEngine(served["model"], tokenizer), MODEL)
    with TestClient(app) as client:  # in-process, with the app's startup and shutdown
        body = {"model": MODEL, "prompt": prompt, "max_tokens": 20, "temperature": 0}
        choice = client.post("/v1/completions", json=body).json()["choices"][0]  # in-process: no network wait
    assert choice["finish_reason"] == "stop"
    assert choice["text"] == free_run[:free_run.index(end)]  # the end token itself is not text
