import os

import pytest
import torch
from safetensors.torch import load_file, save_file

import model

FIXTURE = os.path.join(os.path.dirname(__file__), "fixtures", "minilm_reference.safetensors")


def test_encoder_matches_hugging_face(minilm_dir):
    """Golden outputs written by tests/tools/make_fixtures.py with transformers.BertModel on the same weights."""
    ref = load_file(FIXTURE)
    encoder = model.load_encoder(minilm_dir)
    with torch.no_grad():
        hidden = encoder(ref["input_ids"], ref["attention_mask"])
    real = ref["attention_mask"].bool()
    assert ref["attention_mask"].sum() < ref["attention_mask"].numel(), "the fixture batch must hold padding"
    err = (hidden[real] - ref["hidden"][real]).abs().max().item()
    assert err < 1e-5, f"max abs difference to Hugging Face {err}"


def test_tokenizer_lowercases_and_never_truncates(minilm_dir):
    text = "Lithium-induced nephrogenic Diabetes insipidus (NDI) after 5-FU."
    assert model.load_tokenizer(minilm_dir).encode(text).tokens[:3] == ["[CLS]", "lithium", "-"]
    long = model.load_tokenizer(minilm_dir).encode("word " * 300)
    assert len(long.ids) == 302, "the tokenizer must not truncate (tokenizer.json ships max_length 128)"


def test_save_load_round_trip_is_exact(minilm_dir, tmp_path):
    encoder = model.load_encoder(minilm_dir)
    model.save_encoder(encoder, str(tmp_path), tokenizer_from=minilm_dir)
    again = model.load_encoder(str(tmp_path))
    for (k, a), (k2, b) in zip(encoder.state_dict().items(), again.state_dict().items()):
        assert k == k2 and torch.equal(a, b), k
    assert os.path.exists(tmp_path / "tokenizer.json")


def broken_checkpoint(tmp_path, minilm_dir, edit):
    tensors = load_file(os.path.join(minilm_dir, "model.safetensors"))
    edit(tensors)
    save_file(tensors, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_bytes(open(os.path.join(minilm_dir, "config.json"), "rb").read())
    with pytest.raises(ValueError) as error:
        model.load_encoder(str(tmp_path))
    return str(error.value)


def test_loader_names_missing_tensor(tmp_path, minilm_dir):
    msg = broken_checkpoint(tmp_path, minilm_dir, lambda t: t.pop("encoder.layer.3.output.dense.weight"))
    assert "missing (1): encoder.layer.3.output.dense.weight" in msg and "model.safetensors" in msg


def test_loader_names_unexpected_tensor(tmp_path, minilm_dir):
    msg = broken_checkpoint(tmp_path, minilm_dir, lambda t: t.update({"encoder.layer.9.extra": torch.zeros(2)}))
    assert "unexpected (1): encoder.layer.9.extra" in msg


def test_loader_names_misshaped_tensor(tmp_path, minilm_dir):
    msg = broken_checkpoint(tmp_path, minilm_dir, lambda t: t.update({"embeddings.LayerNorm.bias": torch.zeros(5)}))
    assert "mis-shaped (1): embeddings.LayerNorm.bias: file (5,), model (384,)" in msg


def test_loader_accepts_prefix_and_legacy_names(tmp_path, minilm_dir):
    tensors = load_file(os.path.join(minilm_dir, "model.safetensors"))
    renamed = {"bert." + k.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta"): v
               for k, v in tensors.items()}
    renamed["cls.predictions.bias"] = torch.zeros(3)  # an MLM head: ignored
    save_file(renamed, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_bytes(open(os.path.join(minilm_dir, "config.json"), "rb").read())
    a, b = model.load_encoder(minilm_dir), model.load_encoder(str(tmp_path))
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_config_refuses_what_it_cannot_run(tmp_path):
    (tmp_path / "config.json").write_text('{"position_embedding_type": "relative_key"}')
    with pytest.raises(ValueError, match="relative_key.*absolute"):
        model.BertConfig.from_json(str(tmp_path / "config.json"))
    (tmp_path / "config.json").write_text('{"hidden_act": "swish"}')
    with pytest.raises(ValueError, match="swish"):
        model.BertConfig.from_json(str(tmp_path / "config.json"))


def test_drug_fan_out_equals_one_encoder_pass_per_drug():
    """The batched ADE head == the paper's formulation: one input (and encoder pass) per drug."""
    torch.manual_seed(0)
    config = model.BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
    ade = model.AdeModel(model.BertModel(config)).eval()
    ids = torch.randint(1, 1000, (3, 8))
    mask = torch.tensor([[1] * 8, [1] * 6 + [0] * 2, [1] * 4 + [0] * 4])
    drug_sentence = torch.tensor([0, 0, 2])  # two drugs in sentence 0, none in 1, one in 2
    drug_token_mask = torch.zeros(3, 8)
    drug_token_mask[0, [1, 2, 5]] = 1  # a drug with two mentions
    drug_token_mask[1, 3] = 1
    drug_token_mask[2, 1] = 1
    with torch.no_grad():
        _, ade_logits = ade(ids, mask, drug_sentence, drug_token_mask)
        for m, b in enumerate(drug_sentence.tolist()):
            hidden = ade.encoder(ids[b:b + 1], mask[b:b + 1])[0]  # (T, D), this drug's own pass
            v = hidden[drug_token_mask[m].bool()].mean(0)
            expected = ade.ade_head(torch.cat([hidden, v.expand_as(hidden)], -1))
            assert torch.allclose(ade_logits[m], expected, atol=1e-5)
        drug_logits, none = ade(ids, mask, torch.zeros(0, dtype=torch.long), torch.zeros(0, 8))
    assert none.shape == (0, 8, 3) and drug_logits.shape == (3, 8, 3)


def test_tiny_model_overfits_one_batch():
    torch.manual_seed(0)
    config = model.BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                              intermediate_size=64)
    ner = model.NerModel(model.BertModel(config), n_types=2)
    ids = torch.randint(1, 100, (4, 10))
    mask = torch.ones(4, 10, dtype=torch.long)
    labels = torch.randint(0, 5, (4, 10))
    labels[:, 0] = -100
    opt = torch.optim.AdamW(ner.parameters(), lr=3e-3)
    n = int((labels != -100).sum())
    for _ in range(150):
        loss = model.bio_loss(ner(ids, mask), labels)
        opt.zero_grad()
        (loss / n).backward()
        opt.step()
    ner.eval()
    assert n == 36 and (ner(ids, mask).argmax(-1)[:, 1:] == labels[:, 1:]).all()


def test_student_save_and_load(tmp_path, tiny_bert_dir):
    torch.manual_seed(0)
    ade = model.AdeModel(model.load_encoder(tiny_bert_dir)).eval()
    model.save_student(ade, str(tmp_path / "student"), tiny_bert_dir, {"task": "ade"})
    again, meta = model.load_student(str(tmp_path / "student"))
    assert meta == {"task": "ade", "model": "ade"} and not os.path.exists(tmp_path / "student.tmp")
    assert all(torch.equal(a, b) for a, b in zip(ade.state_dict().values(), again.state_dict().values()))


def serve_like_hugging_face(server, directory):
    """The Hugging Face URL layout over `directory` for ORG/NAME = org/tiny."""
    def handle(h):
        name = h.path.split("/resolve/main/")[1]
        path = os.path.join(directory, name)
        if not h.path.startswith("/org/tiny/") or not os.path.exists(path):
            return server.reply(h, 404, "Entry not found")
        server.reply(h, 200, open(path, "rb").read())
    server.handle = handle


def test_download_hf_over_http_replaces_what_a_kill_left(server, tiny_bert_dir, tmp_path):
    serve_like_hugging_face(server, tiny_bert_dir)
    target = tmp_path / "org--tiny"
    target.mkdir()
    weights = open(os.path.join(tiny_bert_dir, "model.safetensors"), "rb").read()
    (target / "model.safetensors.part").write_bytes(weights[:1000])  # an interrupted earlier download
    path = model.download_hf("hf:org/tiny", str(tmp_path), endpoint=server.url)
    assert open(os.path.join(path, "model.safetensors"), "rb").read() == weights
    assert not (target / "model.safetensors.part").exists()
    a, b = model.load_encoder(tiny_bert_dir), model.load_encoder(path)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert model.load_tokenizer(path).encode("aspirin").ids == model.load_tokenizer(tiny_bert_dir).encode("aspirin").ids
    with pytest.raises(ConnectionError, match="answered 404.*Check the model name"):
        model.download_hf("hf:org/missing", str(tmp_path), endpoint=server.url)


def test_download_hf_without_safetensors_says_what_to_do(server, tiny_bert_dir, tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    (served / "config.json").write_bytes(open(os.path.join(tiny_bert_dir, "config.json"), "rb").read())
    serve_like_hugging_face(server, str(served))  # a repo with pytorch_model.bin only, say
    with pytest.raises(ConnectionError, match="model.safetensors answered 404.*safe_serialization=True"):
        model.download_hf("hf:org/tiny", str(tmp_path / "cache"), endpoint=server.url)


def test_dropout_option_replaces_the_checkpoints_rates(tiny_bert_dir):
    ids = torch.randint(5, 100, (2, 12), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    as_saved = model.load_encoder(tiny_bert_dir).train()
    assert as_saved.config.hidden_dropout_prob > 0  # so two training-mode passes differ
    assert not torch.equal(as_saved(ids, mask), as_saved(ids, mask))
    without = model.load_encoder(tiny_bert_dir, dropout=0.0).train()
    assert without.config.attention_probs_dropout_prob == 0.0
    assert torch.equal(without(ids, mask), without(ids, mask))
    assert torch.allclose(without(ids, mask), without.eval()(ids, mask), atol=1e-6)
