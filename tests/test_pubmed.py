"""PubMed baseline XML -> a drug-bearing sentence pool (data.pubmed_pool), and the pool through the pipeline."""
import gzip
import json
import os
import subprocess
import sys
import tracemalloc

import pytest

import ade_distill
import data
from conftest import ROOT, shrink

# The baseline format (PubmedArticleSet/PubmedArticle/MedlineCitation), cut to the elements that are read.
ARTICLE = """<PubmedArticle><MedlineCitation Status="MEDLINE" Owner="NLM"><PMID Version="1">{pmid}</PMID>
<Article PubModel="Print"><Journal><Title>J Test</Title></Journal><ArticleTitle>{title}</ArticleTitle>
{abstract}</Article></MedlineCitation><PubmedData><ArticleIdList><ArticleId IdType="pubmed">{pmid}</ArticleId>
</ArticleIdList></PubmedData></PubmedArticle>
"""


def baseline_file(path, articles):
    with gzip.open(path, "wt") as f:
        f.write('<?xml version="1.0" encoding="utf-8"?>\n<!DOCTYPE PubmedArticleSet>\n<PubmedArticleSet>\n')
        f.writelines(ARTICLE.format(pmid=p, title=t, abstract=a) for p, t, a in articles)
        f.write("</PubmedArticleSet>\n")
    return str(path)


@pytest.fixture
def pubmed_file(tmp_path, ade_splits):
    test = next(r for r in ade_splits["test"] if r["id"] == "18343993:2")  # a test sentence, drug in the lexicon
    test_pmid = ade_splits["test"][0]["pmid"]
    return baseline_file(tmp_path / "pubmed26n0001.xml.gz", [
        ("90000001", "Warfarin-induced skin necrosis in a patient.",  # a structured abstract, inline markup
         '<Abstract><AbstractText Label="BACKGROUND" NlmCategory="BACKGROUND">Warfarin is widely used (e.g. in '
         'atrial fibrillation). Bleeding is its main risk.</AbstractText><AbstractText Label="CASE">A 70-year-old '
         'man received 2.5 mg of <i>warfarin</i> daily.\n  Necrosis of the skin followed (Fig. 1).</AbstractText>'
         '<AbstractText Label="CONCLUSION">Clinicians should know this.</AbstractText></Abstract>'),
        ("90000002", "Aspirin and asthma.", ""),  # no abstract: skipped
        (test_pmid, "Aspirin caused asthma.", "<Abstract><AbstractText>Aspirin was given.</AbstractText></Abstract>"),
        ("90000004", "Heparin and <sup>99m</sup>Tc scans: a case report.",
         f"<Abstract><AbstractText>{test['text']} Treatment with aspirin was stopped by Dr. J. Smith. "
         "Warfarin-induced skin necrosis in a patient.</AbstractText></Abstract>"),  # a test sentence; a repeat
    ])


def test_pubmed_pool_keeps_new_drug_sentences_once_and_leaves_out_dev_and_test(pubmed_file, ade_splits):
    records, counts = data.pubmed_pool([pubmed_file], ade_splits)
    assert [(r["id"], r["text"]) for r in records] == [
        ("90000001:0", "Warfarin-induced skin necrosis in a patient."),
        ("90000001:1", "BACKGROUND: Warfarin is widely used (e.g. in atrial fibrillation)."),
        ("90000001:3", "CASE: A 70-year-old man received 2.5 mg of warfarin daily."),
        ("90000004:0", "Heparin and 99mTc scans: a case report."),
        ("90000004:2", "Treatment with aspirin was stopped by Dr. J. Smith.")]
    assert dict(counts) == {"articles": 4, "with a drug term": 7, "written": 5, "articles without abstract": 1,
                            "articles of a dev/test PubMed ID": 1, "sentences": 10,
                            "dev/test sentences left out": 1, "repeated sentences left out": 1}


@pytest.mark.parametrize("text, sentences", [
    ("Doses of 2.5 mg were given. The 0.5-mg dose was safe.", ["Doses of 2.5 mg were given.", "The 0.5-mg dose was safe."]),
    ("Drugs given i.v. Were tolerated, e.g. Heparin. Smith et al. Found none, vs. Placebo.",
     ["Drugs given i.v. Were tolerated, e.g. Heparin.", "Smith et al. Found none, vs. Placebo."]),
    ("See Fig. 2 and Table 1. Approved in the U.S. In 2001 it was withdrawn.",
     ["See Fig. 2 and Table 1.", "Approved in the U.S. In 2001 it was withdrawn."]),
    ("As J. R. Smith noted, hepatitis B. Patients recovered.", ["As J. R. Smith noted, hepatitis B.", "Patients recovered."]),
    ("It resolved (day 3). \"Stop it.\" The end! Why? (A) Next [1].",
     ["It resolved (day 3).", "\"Stop it.\"", "The end!", "Why?", "(A) Next [1]."]),
    ("P < 0.05. No trailing period", ["P < 0.05.", "No trailing period"]),
])
def test_sentence_splitter_traps(text, sentences):
    assert data.split_sentences(text) == sentences


def test_reading_a_baseline_file_keeps_memory_flat(tmp_path):
    """The peak memory of reading 1,000 and 10,000 articles is the same (each article is dropped once read)."""
    abstract = ("<Abstract><AbstractText Label=\"RESULTS\">Patient {0} received <i>aspirin</i> 2.5 mg. "
                "Bleeding followed in case {0}. No other event was seen.</AbstractText></Abstract>")
    peaks = []
    for n in (1_000, 10_000):
        path = baseline_file(tmp_path / f"{n}.xml.gz", [(str(10**8 + i), f"Case {i} of aspirin use.",
                                                          abstract.format(i)) for i in range(n)])
        counts, sentences = {"articles": 0}, 0
        tracemalloc.start()
        for _, parts in data.read_pubmed(path, counts):
            sentences += sum(len(data.split_sentences(p)) for p in parts)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
        assert counts["articles"] == n and sentences == 4 * n
    assert peaks[1] < 1.2 * peaks[0] + 100_000, peaks


def test_a_bad_file_is_named(tmp_path, data_dir):
    (tmp_path / "x.xml.gz").write_bytes(b"not gzip")
    out = subprocess.run([sys.executable, os.path.join(ROOT, "data.py"), f"--pubmed={tmp_path / 'x.xml.gz'}",
                          f"--data_dir={os.path.abspath(data_dir)}"], capture_output=True, text=True, cwd=tmp_path)
    last = out.stderr.strip().splitlines()[-1]
    assert out.returncode == 1 and last.startswith(f"error: {tmp_path / 'x.xml.gz'}: not a PubMed baseline")


def test_pubmed_pool_trains_a_student_end_to_end(pubmed_file, tiny_bert_dir, data_dir, tmp_path, ade_splits,
                                                monkeypatch):
    out = subprocess.run([sys.executable, os.path.join(ROOT, "data.py"), f"--pubmed={pubmed_file}",
                          f"--data_dir={data_dir}"], capture_output=True, text=True, check=True)
    assert "written 5" in out.stderr
    (tmp_path / "pool.jsonl").write_text(out.stdout)
    monkeypatch.setattr(data, "load_splits", lambda *a, **k: shrink(ade_splits))  # scored on a few: seconds
    rows = ade_distill.main([f"--init_from={tiny_bert_dir}", f"--data_dir={data_dir}", f"--out_dir={tmp_path / 'run'}",
                             f"--pool={tmp_path / 'pool.jsonl'}", "--max_pool=4", "--epochs=1", "--batch_size=2"])
    assert [r["system"] for r in rows] == ["teacher"] * 3 + ["student"] * 3
    labels = [json.loads(line) for line in open(tmp_path / "run" / "teacher_labels.jsonl")]
    assert len(labels) == 4 and all(r["id"].startswith("9000000") for r in labels)
