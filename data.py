"""Corpora, splits, span <-> BIO alignment and batching (no torch: a labeling machine needs none).

- ADE corpus v2 (Gurulingappa et al. 2012): sentence-level (drug, adverse event) spans recovered from
  the document-level offsets of DRUG-AE.rel; ADE-NEG.txt sentences have no pairs.
- The splits of Gu et al. 2023 (arXiv 2307.06439, section 4.1): 80/10/10 of the 4,272 positive
  sentences with seed 0, `test+neg`, the unlabeled pool, and a 10-fold split by PubMed ID.
- IOB NER corpora (BC5CDR, NCBI-disease) for the medication / disease NER of Vedula et al. 2024.

The data root is `--data_dir`, else $ADE_DISTILL_DATA, else ./data; missing files are downloaded
from their public sources and every file is checked against its sha256.

    python data.py --split=test [--dataset=bc5cdr]     # gold JSONL of a split on stdout
    python data.py --pubmed=FILE.xml.gz > pool.jsonl   # the drug-bearing sentences of PubMed abstracts
"""
import functools
import gzip
import hashlib
import itertools
import json
import os
import random
import re
import sys
import time
import xml.etree.ElementTree as ET
from collections import defaultdict, deque
from contextlib import nullcontext

import numpy as np

try:
    import fcntl  # locks an append-only file for one process
except ImportError:  # Windows: no lock
    fcntl = None

ADE_URL = ("https://raw.githubusercontent.com/trunghlt/AdverseDrugReaction/"
           "2851af96e26050cf551a2e1f716ff861f7b1059b/ADE-Corpus-V2/{name}")
NER_URL = ("https://raw.githubusercontent.com/cambridgeltl/MTL-Bioinformatics-2016/"
           "df0df02fae6dbb87d88ffcf323b9096528f06f84/data/{folder}/{name}")
SHA256 = {  # of the files at the commits in the URLs above
    "ade_corpus_v2/DRUG-AE.rel": "542cdc483ccc94927762eaf2c9a8ecac49a6c10037dda2895be6a6e20160f75a",
    "ade_corpus_v2/ADE-NEG.txt": "8f506c159042ce354fbf26981dc39971dde8f09b1158d94106eab1e516e53fcf",
    "BC5CDR-IOB/train.tsv": "b731361c0ed73afd04cc5fdad39afcdfd8f325d6e46c282339185a91d1af4c14",
    "BC5CDR-IOB/devel.tsv": "b909de65c4f7e3c23bb09ad52d654cdc92e96db941abe1a5dcf6f6010c03cff5",
    "BC5CDR-IOB/test.tsv": "e41a2843a5fff0cd8d1a88cb147968d61ae29336ca70cddc3d7fb8ff21dfa1e8",
    "NCBI-disease-IOB/train.tsv": "58379baf4614b8d757d93dd7a21b202849ca99f9b9d71b49185523ff5443300c",
    "NCBI-disease-IOB/devel.tsv": "b4e1e7efcc2a35047bf2f3d281648357470e674f555d4a26a0049ac37d59cc61",
    "NCBI-disease-IOB/test.tsv": "8f088ce45dc4746592188f9e69de3d89d87f3bb8f0ed8c4a287d018123fa148d",
}
NER_DATASETS = {"bc5cdr": "BC5CDR-IOB", "ncbi_disease": "NCBI-disease-IOB"}
WORD_CHARS = frozenset("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")  # [A-Za-z0-9]
WORD_START = re.compile("(?<![A-Za-z0-9]).", re.S)  # any character but one inside a word


class InputError(ValueError):
    """A file or value the user gave is unusable; the message names it and says what to do."""


def data_root(data_dir=""):
    return data_dir or os.environ.get("ADE_DISTILL_DATA") or "data"


def corpus_file(root, rel_path):
    """Path of a corpus file under the data root; downloaded first if missing; sha256 checked."""
    path, (folder, name) = os.path.join(root, rel_path), rel_path.split("/")
    source, content = path, None
    if not os.path.exists(path):
        import requests
        source = (ADE_URL if folder == "ade_corpus_v2" else NER_URL).format(folder=folder, name=name)
        print(f"{path} is missing; downloading {source}", file=sys.stderr)
        try:
            r = requests.get(source, timeout=60)
            r.raise_for_status()
        except requests.RequestException as e:
            raise FileNotFoundError(f"{path} not found and {source} could not be downloaded "
                                    f"({type(e).__name__}). Download it by hand into "
                                    f"{os.path.join(root, folder)}/, or point --data_dir (or "
                                    "$ADE_DISTILL_DATA) at a directory that holds it.") from None
        content = r.content
    digest = hashlib.sha256(content if content is not None else open(path, "rb").read()).hexdigest()
    if digest != SHA256[rel_path]:
        advice = "" if content else ". Delete it to download it again"
        raise InputError(f"{source}: sha256 {digest} is not the expected {SHA256[rel_path]}; the file is "
                         f"corrupt or a different version{advice}.")
    if content is not None:  # saved only once it is known to be the right file
        write_atomic(path, content)
    return path


# ----------------------------------------------------------------------------- ADE corpus v2

def find_mentions(text, string):
    """Spans of every case-insensitive occurrence of `string` in `text` as a whole word (not inside a
    longer word); if there is none, every plain occurrence ("ototoxicity" vs "toxicity" stays apart)."""
    string = string.strip() or string
    if not string:
        return []
    spans = [m.span() for m in whole_word(string).finditer(text)]
    return spans or [m.span() for m in re.finditer(re.escape(string), text, re.I)]


@functools.lru_cache(maxsize=4096)  # re itself keeps 512 patterns: a year of PubMed names more drugs
def whole_word(string):
    return re.compile(rf"(?<![A-Za-z0-9]){re.escape(string)}(?![A-Za-z0-9])", re.I)


class TermList:
    """Whole-word, case-insensitive matches of terms of 3+ characters, left to right, the longest at each
    position: what one regex alternation of the terms finds, without trying every term at every word."""

    def __init__(self, terms):
        self.terms = {t.lower() for t in terms if len(t) >= 3}
        self.lengths = defaultdict(list)  # the first 3 characters -> the lengths of the terms that start so
        for length, start in sorted({(len(t), t[:3]) for t in self.terms}, reverse=True):  # longest first
            self.lengths[start].append(length)

    def spans(self, text):
        lower = text.lower()
        if len(lower) != len(text):  # offsets must stay those of `text` ("İ" lowercases to two characters)
            lower = "".join(c.lower() if len(c.lower()) == 1 else c for c in text)
        found = []
        for i in (m.start() for m in WORD_START.finditer(text)):
            if found and i < found[-1][1]:  # inside the last match
                continue
            end = next((i + n for n in self.lengths.get(lower[i:i + 3], ()) if i + n <= len(text)
                        and lower[i:i + n] in self.terms and text[i + n:i + n + 1] not in WORD_CHARS), None)
            if end:
                found.append((i, end))
        return found


def read_ade(root):
    """-> (positives, negatives): records {"id", "pmid", "text", "pairs": [{"drug": [s, e], "ade": [s, e]}]};
    the negatives have no pairs. Both files are checked by their sha256, so their format is known."""
    rows = defaultdict(list)  # (pmid, sentence) -> [(ae, ae_begin, drug, drug_begin)]
    with open(corpus_file(root, "ade_corpus_v2/DRUG-AE.rel")) as f:
        for line in f:  # pmid|sentence|ae|begin|end|drug|begin|end
            pmid, text, ae, ae_begin, _, drug, drug_begin, _ = line.rstrip("\n").split("|")
            rows[(pmid, text)].append((ae, int(ae_begin), drug, int(drug_begin)))
    positives, index = [], defaultdict(itertools.count)  # index: the next id of a PubMed ID
    for (pmid, text), relations in rows.items():
        # Offsets count from the start of the abstract, not of the sentence; one shift per sentence maps
        # them onto it: a shift that fits every relation of the sentence (one does, for every row).
        shifts = set.intersection(*({a - m.start() for m in re.finditer(re.escape(ae), text)}
                                    & {d - m.start() for m in re.finditer(re.escape(drug), text)}
                                    for ae, a, drug, d in relations))
        assert shifts, f"no offset shift places every pair of the sentence {pmid}: {text!r}"
        shift = max(shifts)  # were two to fit (a pair written twice), the pair's first occurrence
        pairs = [{"drug": [d - shift, d - shift + len(drug)], "ade": [a - shift, a - shift + len(ae)]}
                 for ae, a, drug, d in dict.fromkeys(relations)]  # each once: rows can repeat a pair
        positives.append({"id": f"{pmid}:{next(index[pmid])}", "pmid": pmid, "text": text, "pairs": pairs})
    with open(corpus_file(root, "ade_corpus_v2/ADE-NEG.txt")) as f:
        sentences = [re.match(r"(\d+) NEG (.*)$", line.rstrip("\n")).groups() for line in f]  # (pmid, text)
    negatives = [{"id": f"{pmid}:n{next(index['n' + pmid])}", "pmid": pmid, "text": text, "pairs": []}
                 for pmid, text in dict.fromkeys(sentences)]  # each once: 7 lines repeat a sentence verbatim
    return positives, negatives


def unlabeled(records):
    return [{k: r[k] for k in ("id", "pmid", "text") if k in r} for r in records]


def held_out_texts(splits):
    """Every sentence that is scored (dev, test and their ADE-free sentences): none may reach training."""
    return {r["text"] for name in ("dev", "dev+neg", "test", "test+neg") for r in splits.get(name, [])}


def without_held_out(records, held_texts, what):
    kept = [r for r in records if r["text"] not in held_texts]
    if len(kept) < len(records):
        print(f"note: {len(records) - len(kept)} {what} sentences also occur in dev/test and are left out",
              file=sys.stderr)
    return kept


def load_splits(root, dataset="ade", cv=0, fold=0):
    """train, dev, test, dev+neg and test+neg (+ the ADE-free sentences of their PubMed IDs), "negatives" (the
    other ADE-free ones), "pool" (both, unlabeled): ADE's 80/10/10 cut, or with cv, fold `fold` by PMID."""
    positives, negatives = read_ade(root) if dataset == "ade" else ([], [])
    if dataset != "ade":
        train, dev, test = (read_iob(corpus_file(root, f"{NER_DATASETS[dataset]}/{name}.tsv"))
                            for name in ("train", "devel", "test"))
    elif not cv:
        order = sorted(positives, key=lambda r: (r["pmid"], r["text"]))
        random.Random(0).shuffle(order)
        n_train, n_dev = int(0.8 * len(order)), int(0.1 * len(order))
        train, dev, test = order[:n_train], order[n_train:n_train + n_dev], order[n_train + n_dev:]
    elif not (cv >= 3 and 0 <= fold < cv):
        raise InputError(f"--cv={cv} fold {fold}: the protocol needs at least 3 folds (test, dev, train)")
    else:
        pmids = sorted({r["pmid"] for r in positives})
        random.Random(0).shuffle(pmids)
        part = {p: min((i - fold) % cv, 2) for i, p in enumerate(pmids)}  # 0: test, 1: dev (next), 2: train
        test, dev, train = ([r for r in positives if part[r["pmid"]] == k] for k in range(3))
    dev_pmids, test_pmids = ({r.get("pmid") for r in records} for records in (dev, test))  # NER: no pmid
    splits = {"dev": dev, "test": test,
              "dev+neg": dev + [r for r in negatives if r["pmid"] in dev_pmids],
              "test+neg": test + [r for r in negatives if r["pmid"] in test_pmids]}
    held = held_out_texts(splits)  # one sentence text is in the ADE corpus under two PubMed IDs
    splits["train"] = without_held_out(train, held, "train" if dataset == "ade" else f"{dataset} train")
    other_abstracts = [r for r in negatives if r["pmid"] not in dev_pmids | test_pmids]
    splits["negatives"] = without_held_out(other_abstracts, held, "ADE-free")
    splits["pool"] = unlabeled(splits["train"] + splits["negatives"])
    return splits


# ----------------------------------------------------------------------------- PubMed baseline XML

def read_pubmed(path, counts):
    """Stream a PubMed baseline file (.xml.gz or .xml) -> (PMID, [title, abstract]) per article; structured
    abstracts keep their section labels ("CONCLUSION: ..."); articles without one are skipped and counted."""
    def text_of(element):  # the text with its inline markup, whitespace runs made single spaces
        return " ".join("".join(element.itertext()).split()) if element is not None else ""

    with (gzip.open if path.endswith(".gz") else open)(path, "rb") as f:
        events = ET.iterparse(f, events=("start", "end"))
        try:
            _, root = next(events)
        except (ET.ParseError, OSError) as e:  # OSError: not gzip
            raise InputError(f"{path}: not a PubMed baseline XML file ({e})") from None
        for event, element in events:
            if event != "end" or element.tag != "PubmedArticle":
                continue
            counts["articles"] += 1
            pmid = element.findtext("MedlineCitation/PMID")
            sections = [(part.get("Label"), text_of(part))
                        for part in element.iterfind("MedlineCitation/Article/Abstract/AbstractText")]
            if pmid and any(text for _, text in sections):
                abstract = " ".join(f"{label}: {text}" if label else text for label, text in sections if text)
                yield pmid.strip(), [text_of(element.find("MedlineCitation/Article/ArticleTitle")), abstract]
            else:
                counts["articles without abstract"] += 1
            root.clear()  # drop the articles read so far: a whole file never sits in memory


ABBREVIATIONS = set("al vs cf fig figs approx ca no nos dr drs prof mr mrs ms st resp incl ref refs vol eq "
                    "jan feb mar apr jun jul aug sep sept oct nov dec".split())


def split_sentences(text):
    """A rule-based splitter for biomedical abstracts: a sentence ends at . ? or ! (and any closing quote or
    parenthesis after it) before a space and a capital, a digit, an opening bracket or a quote, unless the
    word before the period is an abbreviation ("e.g.", "et al.", "vs.", "Fig."; any word with an inner
    period, "i.v.", "U.S."), or an initial: a lone capital after a capitalised word or another initial ("J. R.
    Smith"; but "hepatitis B." ends a sentence). Decimals ("2.5 mg") never have a space after the period."""
    sentences, start = [], 0
    for m in re.finditer(r"[.?!][\"')\]]*\s+(?=[A-Z0-9(\[\"'])", text):
        words = [""] + text[start:m.start() + 1].split()  # "": no word before the first
        word, previous = words[-1].rstrip(".").lstrip("(\"'["), words[-2]
        abbreviation = text[m.start()] == "." and (
            word.lower() in ABBREVIATIONS or re.fullmatch(r"(?:[A-Za-z]\.)+[A-Za-z]", word)
            or (len(word) == 1 and word.isupper() and (not previous or previous[0].isupper())))
        if not abbreviation:
            sentences.append(text[start:m.end()].strip())
            start = m.end()
    return [s for s in [*sentences, text[start:].strip()] if s]  # and the rest, if there is any


def pubmed_pool(paths, splits):
    """PubMed baseline files -> pool records {"id": "PMID:index", "pmid", "text"}: the sentences with a drug
    term of the train split, each text once, no dev/test sentence and no sentence of a dev/test PubMed ID.
    The index counts every sentence of the article (title first), so ids are stable. -> (records, counts)."""
    drugs = TermList({r["text"][slice(*p["drug"])] for r in splits["train"] for p in r["pairs"]})
    held_texts, held_pmids = held_out_texts(splits), {r["pmid"] for r in splits["dev"] + splits["test"]}
    counts, seen = defaultdict(int), set()

    def records():
        for pmid, parts in itertools.chain.from_iterable(read_pubmed(path, counts) for path in paths):
            if pmid in held_pmids:
                counts["articles of a dev/test PubMed ID"] += 1
                continue
            for index, text in enumerate(s for part in parts for s in split_sentences(part)):
                counts["sentences"] += 1
                if not drugs.spans(text):
                    continue
                counts["with a drug term"] += 1
                fate = ("dev/test sentences left out" if text in held_texts else
                        "repeated sentences left out" if text in seen else "written")
                counts[fate] += 1
                if fate == "written":
                    seen.add(text)
                    yield {"id": f"{pmid}:{index}", "pmid": pmid, "text": text}
    return records(), counts


# ----------------------------------------------------------------------------- IOB NER corpora

def read_iob(path):
    """token<TAB>tag lines, blank between sentences -> records {"id", "text", "entities"}, the text the tokens
    joined by spaces (exact offsets); an I-tag after O or another type opens an entity, as in conlleval."""
    records, text, entities, previous = [], "", [], ""  # previous: the type of the last token, "" after O
    split = os.path.splitext(os.path.basename(path))[0]
    with open(path) as f:
        for n, line in enumerate(itertools.chain(f, [""]), 1):  # "": the end of the last sentence
            if not line.strip():
                if text:
                    records.append({"id": f"{split}:{len(records)}", "text": text, "entities": entities})
                text, entities, previous = "", [], ""
                continue
            word, _, tag = line.rstrip("\n").partition("\t")  # a second tab fails the tag's \S+
            if not word or not re.fullmatch(r"O|[BI]-\S+", tag):
                raise InputError(f"{path}:{n}: expected 'token<TAB>tag' with tag O, B-TYPE or I-TYPE, "
                                 f"found {line.strip()!r}")
            start, text = len(text) + bool(text), text + " " * bool(text) + word
            if tag.startswith("I-") and previous == tag[2:]:  # it continues the last entity
                entities[-1]["span"][1] = len(text)
            elif tag != "O":
                entities.append({"span": [start, len(text)], "type": tag[2:]})
            previous = tag[2:]
    return records


def entity_types(records):
    return sorted({e["type"] for r in records for e in r.get("entities", [])})


# ----------------------------------------------------------------------------- spans <-> sub-word BIO

def encode(tokenizer, texts, max_len):
    """-> one dict per text: ids, offsets (char [start, end) per token), words (None for [CLS]/[SEP]). A text
    over max_len tokens is cut (keeping [SEP]), counted, and carries "cut_at": where its kept tokens end."""
    encoded = []
    for e in tokenizer.encode_batch(list(texts)):
        enc = {"ids": list(e.ids), "offsets": list(e.offsets), "words": list(e.word_ids)}
        if len(enc["ids"]) > max_len:
            enc = {key: tokens[:max_len - 1] + tokens[-1:] for key, tokens in enc.items()}
            enc["cut_at"] = enc["offsets"][-2][1]
        encoded.append(enc)
    if cut := sum("cut_at" in enc for enc in encoded):
        print(f"note: {cut} of {len(encoded)} sentences are longer than {max_len} tokens and were cut there; "
              "spans past the cut cannot be predicted (raise --max_len)", file=sys.stderr)
    return encoded


def spans_to_bio(enc, spans):
    """[(start, end, type_index)] -> (labels per token: O=0, B-k=1+2k on a span's first token, I-k=2+2k on
    its other tokens, -100 on [CLS]/[SEP]; the number of spans whose edges fall inside a token; the number
    that reach past a --max_len cut)."""
    labels = [0 if w is not None else -100 for w in enc["words"]]
    off_boundary = past_cut = 0
    for start, end, k in spans:
        inside = token_mask(enc, [(start, end)])
        if end > enc.get("cut_at", end):
            past_cut += 1
        elif not inside or enc["offsets"][inside[0]][0] != start or enc["offsets"][inside[-1]][1] != end:
            off_boundary += 1  # whitespace only, or edges inside a token
        for j, i in enumerate(inside):
            if labels[i] == 0:  # overlapping spans of one head: the first keeps its tokens
                labels[i] = 1 + 2 * k + (j > 0)
    return labels, off_boundary, past_cut


def token_mask(enc, spans):
    """Indices of the tokens that overlap any of `spans` (the sub-words a drug vector averages)."""
    return [i for i, ((s, e), w) in enumerate(zip(enc["offsets"], enc["words"]))
            if w is not None and any(s < end and e > start for start, end in spans)]


def drug_entities(text, drug_spans):
    """Group drug spans by their text (case-insensitive) -> {lower text: all its mentions in the sentence}."""
    entities = {}
    for s, e in drug_spans:
        entities.setdefault(text[s:e].lower(), set(map(tuple, find_mentions(text, text[s:e])))).add((s, e))
    return {k: sorted(v) for k, v in entities.items()}


def as_entities(record):
    """(drug, ADE) pairs -> typed entities, for the plain head: every mention of a drug, every ADE."""
    drugs = drug_entities(record["text"], [p["drug"] for p in record["pairs"]]).values()
    spans = {(*s, "drug") for s in itertools.chain(*drugs)} | {(*p["ade"], "ade") for p in record["pairs"]}
    return {**record, "entities": [{"span": [s, e], "type": t} for s, e, t in sorted(spans)]}


def ade_example(enc, record, unpaired=()):
    """A labelled record -> token labels for the drug head and, per drug entity, its mention tokens and
    the labels of its adverse events. `unpaired`: spans of drug mentions that no pair of the record holds;
    each such drug becomes an all-O row of the ADE head (a drug need not have an adverse event)."""
    text, pairs = record["text"], record.get("pairs", [])
    entities = drug_entities(text, [p["drug"] for p in pairs])
    drug_spans = [(s, e, 0) for mentions in entities.values() for s, e in mentions]
    free = [(s, e) for s, e in unpaired if not any(s < pe and e > ps for ps, pe, _ in drug_spans)]
    for key, mentions in drug_entities(text, free).items():  # after the paired ones, with no adverse event
        entities.setdefault(key, mentions)
    ades = [sorted({(*p["ade"], 0) for p in pairs if text[slice(*p["drug"])].lower() == key})
            for key in entities]
    heads = [spans_to_bio(enc, spans) for spans in [drug_spans, *ades]]  # the drug head, then each drug's row
    drugs = [{"tokens": token_mask(enc, mentions), "labels": labels}
             for mentions, (labels, _, _) in zip(entities.values(), heads[1:])]
    return {"ids": enc["ids"], "labels": heads[0][0], "drugs": drugs,
            "off_boundary": sum(h[1] for h in heads), "past_cut": sum(h[2] for h in heads)}


def ner_example(enc, record, types):
    spans = [(*e["span"], types.index(e["type"])) for e in record.get("entities", [])]
    labels, off_boundary, past_cut = spans_to_bio(enc, spans)
    return dict(ids=enc["ids"], labels=labels, drugs=[], off_boundary=off_boundary, past_cut=past_cut)


# ----------------------------------------------------------------------------- batching

def length_batches(lengths, batch_size, shuffle=False, seed=0):
    """Batches of indices of similar length (less padding): sorted in 50-batch windows, shuffled to train."""
    order, rng = list(range(len(lengths))), random.Random(seed)
    if shuffle:
        rng.shuffle(order)
    window = batch_size * 50
    parts = (sorted(order[w:w + window], key=lambda i: lengths[i]) for w in range(0, len(order), window))
    batches = [part[j:j + batch_size] for part in parts for j in range(0, len(part), batch_size)]
    if shuffle:
        rng.shuffle(batches)
    return batches


def split_by_tokens(batch, lengths, max_tokens, multiple=8):
    """One batch of indices -> consecutive parts of at most `max_tokens` padded tokens each, the micro-batches
    of one optimizer step: a batch of long sentences then holds no more activations than one of short ones."""
    longest = -(-max(lengths[i] for i in batch) // multiple) * multiple
    per_part = max(1, max_tokens // longest)
    return [batch[k:k + per_part] for k in range(0, len(batch), per_part)]


def collate(examples, pad_id=0, multiple=8):
    """Examples from ade_example/ner_example (or bare {"ids"} to predict) -> numpy arrays padded to a multiple
    of 8 tokens: fewer distinct shapes, so fewer of the per-shape buffers that CPU kernels keep."""
    B, T = len(examples), -(-max(len(x["ids"]) for x in examples) // multiple) * multiple
    input_ids, attention_mask, labels = (np.full((B, T), fill, dtype=np.int64) for fill in (pad_id, 0, -100))
    for b, x in enumerate(examples):
        n = len(x["ids"])
        input_ids[b, :n], attention_mask[b, :n], labels[b, :n] = x["ids"], 1, x.get("labels", -100)
    drugs = [(b, drug) for b, x in enumerate(examples) for drug in x.get("drugs", [])]  # one ADE row each
    drug_token_mask = np.zeros((len(drugs), T), dtype=np.float32)
    ade_labels = np.full((len(drugs), T), -100, dtype=np.int64)
    for row, (b, drug) in enumerate(drugs):
        drug_token_mask[row, drug["tokens"]] = 1.0
        ade_labels[row, :len(examples[b]["ids"])] = drug.get("labels", -100)
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels,
            "drug_sentence": np.array([b for b, _ in drugs], dtype=np.int64),
            "drug_token_mask": drug_token_mask, "ade_labels": ade_labels}


# ----------------------------------------------------------------------------- small shared helpers

def iter_sentences(path, start=0, stop=None):
    """JSON Lines of {"id", "text", ...} or plain text, one sentence a line (ids: line numbers), read lazily;
    lines start+1 to stop only (from 1, blank ones counted). A line that is neither is an error naming it."""
    with open(path, "rb") as f:
        for n, raw in enumerate(itertools.islice(f, start, stop), start + 1):
            try:
                line = raw.decode("utf-8")
                plain = {"id": str(n), "text": line.rstrip()}
                record = json.loads(line) if line.lstrip().startswith("{") else plain
            except UnicodeDecodeError as e:
                raise InputError(f"{path}:{n}: not UTF-8 text ({e.reason} at byte {e.start}); save the file "
                                 "as UTF-8") from None
            except json.JSONDecodeError as e:
                raise InputError(f"{path}:{n}: not valid JSON ({e.msg}); each line must be one JSON "
                                 "object") from None
            if not line.strip():
                continue
            if not isinstance(record, dict) or "id" not in record or not isinstance(record.get("text"), str) \
                    or not record["text"].strip():
                raise InputError(f'{path}:{n}: expected an object with "id" and a non-empty "text"')
            yield record


def open_appendable(path, advice):
    """An append-only JSON Lines file (the reply cache, --predict_out) opened "a+b" for this process alone:
    locked first (another process holding it is an InputError ending in `advice`), then a last line that a
    kill left half-written is cut, if it starts as a JSON line does. -> the file, to read from its start."""
    f = open(path, "a+b")
    try:  # two processes appending to one file would interleave their lines
        if fcntl:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.close()
        raise InputError(f"{path} is in use by another run; {advice}") from None
    f.seek(0)
    end = sum(len(line) for line in f if line.endswith(b"\n"))
    f.seek(end)
    if tail := f.read(1):
        if tail != b"{":
            f.close()
            raise InputError(f"{path} does not end in a line of JSON; is it an output of this program? "
                             f"Else {advice}")
        f.truncate(end)
        print(f"note: {path}: dropped a half-written last line (an interrupted run)", file=sys.stderr)
    f.seek(0)
    return f


def parse_shard(text):
    k, _, n = text.partition("/") if text else ("1", "/", "1")
    if not (k.isdigit() and n.isdigit() and 1 <= int(k) <= int(n)):
        raise InputError(f"--shard={text}: K/N with 1 <= K <= N, e.g. --shard=1/4 to 4/4")
    return int(k), int(n)


def map_jsonl(path, fn, out="", shard="", chunk=1000):
    """`fn` (records -> records) over the sentences of `path` a chunk at a time, so memory does not grow with
    the file, in order, to stdout or to the file `out`, where rerunning continues after its last line (which
    must be the output of the same sentence). shard "K/N": the K-th of N contiguous parts of the lines."""
    k, n = parse_shard(shard)
    with open(path, "rb") as f:
        lines = sum(1 for _ in f)  # blank lines count, and a last line without its newline
    first, stop = lines * (k - 1) // n, lines * k // n
    records = iter_sentences(path, first, stop)
    if first == stop:
        print(f"note: part {k}/{n} of {path} ({lines} lines) holds no line", file=sys.stderr)
    with open_appendable(out, "pass another output file") if out else nullcontext() as f:
        done, last = max(enumerate(f or [], 1), default=(0, b"null"))  # the lines written before, the last
        try:
            last = json.loads(last)
        except ValueError:
            raise InputError(f"{out}:{done}: not a line of JSON; is this an output file?") from None
        skipped = deque(itertools.islice(records, done), maxlen=1)  # keeps only the last
        if done and not (isinstance(last, dict) and skipped and
                         (last.get("id"), last.get("text")) == (skipped[0]["id"], skipped[0]["text"])):
            raise InputError(f"{out} holds other lines than the outputs of {path}"
                             f"{f' part {k}/{n}' if n > 1 else ''} (line {done}); rerun with the arguments "
                             "that wrote it, or pass another output file")
        write = (lambda text: f.write(text.encode())) if f else sys.stdout.write
        print(f"predicting lines {first + 1}-{stop} of {path} ({lines:,} lines; {done:,} sentences done "
              "before)", file=sys.stderr)
        t0, new, todo = time.time(), 0, stop - first - done  # lines: blank ones make it "at most"
        while batch := list(itertools.islice(records, chunk)):
            write("".join(json.dumps(r) + "\n" for r in fn(batch)))
            (f or sys.stdout).flush()
            new += len(batch)
            progress("predicted (lines)", new, todo, t0)
        progress("predicted (lines)", new, todo, t0, end=True)


def write_atomic(path, content):
    """Write text or bytes to `path` through a temporary file: a crash leaves the old file or the new one."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path + ".tmp", "wb" if isinstance(content, bytes) else "w") as f:
        f.write(content)
    os.replace(path + ".tmp", path)


def write_jsonl_file(records, path):
    write_atomic(path, "".join(json.dumps(r) + "\n" for r in records))


_last_progress = [0.0]


def progress(what, done, total, t0, end=False):
    """Done/total, rate, ETA on stderr: one updating line on a terminal (at most twice a second); in a log
    file or a pipe, a plain line every 10 seconds instead of hundreds of carriage returns."""
    terminal = sys.stderr.isatty()
    if not end and time.time() - _last_progress[0] < (0.5 if terminal else 10):
        return
    _last_progress[0] = time.time()
    rate = done / max(time.time() - t0, 1e-9)
    eta = int((total - done) / rate if rate > 0 else 0)
    print("\r" * terminal + f"{what} {done}/{total}  {rate:.1f}/s  ETA {eta // 60}m{eta % 60:02d}s ",
          end="\n" if end or not terminal else "", file=sys.stderr, flush=True)


if __name__ == "__main__":
    import argparse
    cli = argparse.ArgumentParser(description="Gold JSONL of a split, or a PubMed sentence pool, on stdout.")
    what = cli.add_mutually_exclusive_group(required=True)
    what.add_argument("--split", choices=("train", "dev", "dev+neg", "test", "test+neg", "negatives", "pool"))
    what.add_argument("--pubmed", action="append", metavar="FILE.xml.gz", help="repeatable")
    cli.add_argument("--dataset", default="ade", choices=("ade", *NER_DATASETS), help="the corpus of --split")
    cli.add_argument("--data_dir", default="", help="the data root; else $ADE_DISTILL_DATA, else ./data")
    args = cli.parse_args()
    try:
        splits = load_splits(data_root(args.data_dir), "ade" if args.pubmed else args.dataset)
        records, counts = pubmed_pool(args.pubmed, splits) if args.pubmed else (splits[args.split], {})
        sys.stdout.writelines(json.dumps(r) + "\n" for r in records)
    except (OSError, InputError) as e:
        sys.exit(f"error: {e}")
    if counts:
        print("pubmed: " + ", ".join(f"{k} {v}" for k, v in counts.items()), file=sys.stderr)
