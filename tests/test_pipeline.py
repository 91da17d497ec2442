"""The whole pipeline on a tiny random BERT, in process on a small cut of dev and test (seconds on a CPU):
outputs, the kept epoch, prediction, the start cost, options and bad input. The runs in subprocesses
(kills and resumes, the command line) are marked slow."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import ade_distill
import data
import evaluate
import model
from conftest import ROOT, shrink

LOAD_SPLITS = data.load_splits  # the real one: the fixture `small` replaces it while this module runs


def args(tiny_bert_dir, out_dir, *extra):
    return [f"--init_from={tiny_bert_dir}", f"--out_dir={out_dir}", "--max_pool=64", "--epochs=3",
            "--batch_size=8", "--lr=1e-3", "--empty_ratio=-1", *extra]


@pytest.fixture(scope="module")
def small(small_splits):
    """ade_distill.main on the small cut of the splits: from the first test that asks for it to the end of
    this module (tests that need other splits patch data.load_splits themselves)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(data, "load_splits", lambda *a, **k: small_splits)
        yield small_splits


@pytest.fixture(scope="module")
def tiny_run(small, tiny_bert_dir, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("run"))
    return out, ade_distill.main(args(tiny_bert_dir, out))


@pytest.fixture(scope="module")
def trained(small, tiny_bert_dir, tmp_path_factory):
    """A tiny student that finds pairs: 80 steps on the train split's gold labels at a high rate."""
    out = str(tmp_path_factory.mktemp("trained"))
    ade_distill.main([f"--init_from={tiny_bert_dir}", f"--out_dir={out}", "--teacher=gold", "--empty_ratio=0",
                      "--epochs=1", "--max_steps=80", "--batch_size=16", "--lr=1e-2", "--amp=fp32"])
    return out


def test_pipeline_writes_every_output(tiny_run, small):
    out, rows = tiny_run
    assert [(r["system"], r["split"]) for r in rows] == [(system, split) for system in ("teacher", "student")
                                                        for split in ("test", "test+neg", "test 2+ drugs")]
    assert json.load(open(os.path.join(out, "results.json"))) == rows
    for r in rows:
        assert r["teacher"] == "lexicon"
        for m in ("strict", "lenient"):
            assert set(r[m]) == {"precision", "recall", "f1", "tp", "n_pred", "n_gold", "ci95"}
    n_gold = len(evaluate_units(small["test"]))
    assert rows[0]["strict"]["n_gold"] == rows[3]["strict"]["n_gold"] == n_gold
    assert "| teacher | lexicon | test |" in open(os.path.join(out, "results.md")).read()
    predictions = [json.loads(line) for line in open(os.path.join(out, "test_predictions.jsonl"))]
    assert [p["id"] for p in predictions] == [r["id"] for r in small["test"]]
    assert json.load(open(os.path.join(out, "config.json")))["max_pool"] == 64
    assert len(open(os.path.join(out, "teacher_labels.jsonl")).readlines()) == 64
    student = os.path.join(out, "student")
    assert {"config.json", "model.safetensors", "heads.safetensors", "student.json", "tokenizer.json"} <= \
        set(os.listdir(student))
    assert json.load(open(os.path.join(student, "student.json")))["start_cost"] in ade_distill.COST_GRID


def evaluate_units(records):
    import evaluate
    return [u for r in records for u in evaluate.units(r, "pairs")]


def test_loss_falls(tiny_run):
    history = torch.load(os.path.join(tiny_run[0], "last", "train_state.pt"), weights_only=True)["history"]
    assert len(history) == 24  # 64 sentences / 8 per batch x 3 epochs
    assert sum(history[-4:]) / 4 < 0.8 * sum(history[:4]) / 4, history


def test_the_kept_student_is_the_best_dev_epoch(small, tiny_bert_dir, tmp_path, capsys, monkeypatch):
    scores = iter([0.2, 0.5, 0.3])  # epoch 2 is the best: its weights must be the ones kept
    monkeypatch.setattr(ade_distill, "dev_score", lambda row: next(scores, 0.0))
    weights = []
    save = ade_distill.model.save_student

    def spy(student, path, *rest):
        if path.endswith("last"):
            weights.append(student.drug_head.weight.detach().clone())
        save(student, path, *rest)
    monkeypatch.setattr(ade_distill.model, "save_student", spy)
    ade_distill.main(args(tiny_bert_dir, tmp_path, "--start_cost=0"))
    kept = ade_distill.model.load_student(str(tmp_path / "student"))[0]
    assert len(weights) == 3 and torch.equal(kept.drug_head.weight, weights[1])
    assert not torch.equal(weights[1], weights[2])
    err = capsys.readouterr().err
    assert err.count("(best so far: saved)") == 2  # epochs 1 and 2


def test_python_prediction_equals_predict_file(trained, small, tmp_path):
    student, tokenizer, meta = ade_distill.load_trained(trained)
    cfg = ade_distill.Config.parse(["--teacher=gold"])  # the gold teacher: the dev score alone chooses
    assert meta["start_cost"] == ade_distill.choose_start_cost(student, tokenizer, meta, small, cfg, None,
                                                              ade_distill.COST_GRID)[0]
    assert meta["max_len"] == 128
    records = [{"id": r["id"], "text": r["text"]} for r in small["test"][:30]]
    in_python = ade_distill.predict(student, tokenizer, records, meta)
    assert sum(len(r["pairs"]) for r in in_python) >= 5, "the student must find pairs for this to test anything"
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    lines = run_main(["--out_dir=" + trained, f"--predict_file={tmp_path / 'in.jsonl'}", "--amp=fp32"])
    assert [json.loads(line) for line in lines] == in_python  # the precision of the trained run: fp32
    saved = [json.loads(line) for line in open(os.path.join(trained, "test_predictions.jsonl"))][:30]
    assert saved == in_python  # the run's own test predictions: the same decoding
    for r in in_python:
        for p in r["pairs"]:
            assert p["drug_text"] == r["text"][slice(*p["drug"])] and p["ade_text"] == r["text"][slice(*p["ade"])]
            assert 0.0 < p["confidence"] <= 1.0


@pytest.mark.parametrize("amp", ["fp32", "bf16"])
def test_prediction_in_slices_equals_whole_batches(trained, small, monkeypatch, amp):
    """MAX_PREDICT_TOKENS bounds prediction's peak memory; the output must not depend on it."""
    student, tokenizer, meta = ade_distill.load_trained(trained)
    records = [{"id": r["id"], "text": r["text"]} for r in small["test"][:64]]
    dtype = torch.bfloat16 if amp == "bf16" else None
    whole = ade_distill.predict(student, tokenizer, records, meta, dtype)
    assert sum(len(r["pairs"]) for r in whole) >= 5, "the student must find pairs for this to test anything"
    shapes, forward = [], student.encoder.forward
    monkeypatch.setattr(student.encoder, "forward",
                        lambda ids, mask: shapes.append(ids.shape) or forward(ids, mask))
    monkeypatch.setattr(ade_distill, "MAX_PREDICT_TOKENS", 1)  # one sentence a slice
    assert same_predictions(ade_distill.predict(student, tokenizer, records, meta, dtype), whole)
    assert len(shapes) == len(records) and {rows for rows, _ in shapes} == {1}


def same_predictions(a, b):
    """Records equal in every span and text; confidences within 1e-4 (their last digit may differ with the
    rows beside a sentence in a batch)."""
    def spans(records):
        return [{**r, "pairs": [{k: v for k, v in p.items() if k != "confidence"} for p in r["pairs"]]} for r in records]
    confidences = lambda records: [p["confidence"] for r in records for p in r["pairs"]]  # noqa: E731
    return spans(a) == spans(b) and np.allclose(confidences(a), confidences(b), rtol=0, atol=1.01e-4)


def run_main(argv):
    """ade_distill.main's stdout lines (--predict and --predict_file write there)."""
    import contextlib
    import io
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        ade_distill.main(argv)
    return out.getvalue().splitlines()


def test_amp_at_prediction(trained, small, tmp_path, capsys):
    student, tokenizer, meta = ade_distill.load_trained(trained)
    records = [{"id": r["id"], "text": r["text"]} for r in small["test"][:20]]
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    capsys.readouterr()
    lines = run_main([f"--out_dir={trained}", f"--predict_file={tmp_path / 'in.jsonl'}", "--amp=bf16"])
    assert "precision bfloat16 (--amp=bf16)" in capsys.readouterr().err
    assert [json.loads(line) for line in lines] == ade_distill.predict(student, tokenizer, records, meta,
                                                                          torch.bfloat16)


def test_predict_file_of_plain_lines_and_predict(trained, tmp_path):
    (tmp_path / "in.txt").write_text("Aspirin-induced asthma.\n\nHeparin caused bleeding.\n")
    records = [json.loads(line) for line in run_main([f"--out_dir={trained}", f"--predict_file={tmp_path / 'in.txt'}"])]
    assert [(r["id"], r["text"]) for r in records] == [("1", "Aspirin-induced asthma."),
                                                        ("3", "Heparin caused bleeding.")]
    [one] = [json.loads(line) for line in run_main([f"--out_dir={trained}", "--predict=Aspirin-induced asthma."])]
    assert one == {**records[0], "id": "1"}


def sentences_file(path, small, n):
    """n sentences of the corpus as JSON Lines, a blank line every 7th line (skipped, but counted)."""
    texts = [r["text"] for split in ("test", "dev") for r in small[split]]
    lines = ["" if k % 7 == 6 else json.dumps({"id": f"s{k}", "text": texts[k % len(texts)]}) for k in range(n)]
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def test_shards_joined_in_order_are_one_run(trained, small, tmp_path):
    infile = sentences_file(tmp_path / "in.jsonl", small, 50)
    whole = run_main([f"--out_dir={trained}", f"--predict_file={infile}"])
    assert len(whole) == 43 and sum('"drug"' in line for line in whole) >= 5
    parts = []
    for k in (1, 2, 3):
        out = tmp_path / f"part{k}.jsonl"
        assert run_main([f"--out_dir={trained}", f"--predict_file={infile}", f"--shard={k}/3",
                         f"--predict_out={out}"]) == []
        parts.append(out.read_text().splitlines())
    assert [len(p) for p in parts] == [14, 15, 14]  # lines 1-16, 17-33, 34-50 less their blank lines (7, 14, ...)
    assert same_predictions([json.loads(line) for line in sum(parts, [])], [json.loads(line) for line in whole])


@pytest.mark.slow
def test_a_killed_prediction_resumes_after_the_last_line_written(trained, small, tmp_path):
    """A real SIGKILL part-way, then a line cut in half as a kill while writing leaves it: the rerun of the
    same command writes each line exactly once, the same lines as one uninterrupted run."""
    infile = sentences_file(tmp_path / "in.jsonl", small, 4000)
    out = tmp_path / "out.jsonl"
    command = [sys.executable, os.path.join(ROOT, "ade_distill.py"), f"--out_dir={trained}",
               f"--predict_file={infile}", f"--predict_out={out}"]
    process = subprocess.Popen(command, stderr=subprocess.DEVNULL)
    while process.poll() is None and (not out.exists() or out.read_text().count("\n") < 1000):
        time.sleep(0.005)
    process.kill()
    process.wait()
    written = out.read_text().splitlines()
    assert 1000 <= len(written) < 3000, "the kill must come part-way for this to test anything"
    with open(out, "a") as f:
        f.write(written[-1][:len(written[-1]) // 2])  # the next line, half-written
    subprocess.run(command, check=True, stderr=subprocess.DEVNULL)
    resumed = out.read_text().splitlines()
    assert resumed[:len(written)] == written
    assert same_predictions([json.loads(line) for line in resumed],  # to stdout, uninterrupted
                            [json.loads(line) for line in run_main(command[2:4])])
    assert len({json.loads(line)["id"] for line in resumed}) == len(resumed) == 3429  # 4,000 less 571 blank
    with pytest.raises(data.InputError, match="holds other lines than the outputs of .* part 1/2 .line 3429."):
        ade_distill.main([*command[2:], "--shard=1/2"])


def test_a_prediction_output_is_checked_before_anything_is_cut(trained, small, tmp_path, capsys):
    infile = sentences_file(tmp_path / "in.jsonl", small, 20)
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes, no newline at the end")
    with pytest.raises(data.InputError, match="notes.txt does not end in a line of JSON"):
        ade_distill.main([f"--out_dir={trained}", f"--predict_file={infile}", f"--predict_out={notes}"])
    assert notes.read_text() == "my notes, no newline at the end"
    for out, why in ((tmp_path, "Is a directory"), (tmp_path / "no" / "p.jsonl", "No such file or directory")):
        with pytest.raises(SystemExit, match=f"^error: .*{why}: '{out}'$"):
            ade_distill.cli([f"--out_dir={trained}", f"--predict_file={infile}", f"--predict_out={out}"])
    other = tmp_path / "other.jsonl"  # predictions of another file with the same ids
    run_main([f"--out_dir={trained}", f"--predict_file={infile}", f"--predict_out={other}"])
    (tmp_path / "in2.jsonl").write_text(open(infile).read().replace('"text": "', '"text": "New. '))
    before = other.read_text()
    with pytest.raises(data.InputError, match="holds other lines than the outputs of .*in2.jsonl"):
        ade_distill.main([f"--out_dir={trained}", f"--predict_file={tmp_path / 'in2.jsonl'}", f"--predict_out={other}"])
    assert other.read_text() == before
    capsys.readouterr()
    assert run_main([f"--out_dir={trained}", f"--predict_file={infile}", "--shard=4/4", f"--predict_out={other}2"]) == []
    assert "holds no line" not in capsys.readouterr().err and (tmp_path / "other.jsonl2").read_text()
    (tmp_path / "two.txt").write_text("Aspirin.\nHeparin.\n")
    run_main([f"--out_dir={trained}", f"--predict_file={tmp_path / 'two.txt'}", "--shard=1/3",
              f"--predict_out={tmp_path / 'empty.jsonl'}"])
    assert "holds no line" in capsys.readouterr().err and (tmp_path / "empty.jsonl").read_text() == ""


def test_given_drugs_uses_the_gold_drug_spans(trained, small):
    student, tokenizer, meta = ade_distill.load_trained(trained)
    test = [r for r in small["test"] if r["pairs"]][:30]
    drug_text = lambda r, x: r["text"][slice(*x["drug"])].lower()  # noqa: E731
    # given drugs the drug head does not find: the first word of each sentence, as the drug of every pair
    first_word = [{**r, "pairs": [{"drug": [0, r["text"].index(" ")], "ade": [0, 1]}]} for r in test]
    with_first = ade_distill.predict(student, tokenizer, test, meta, given=first_word)
    assert sum(len(r["pairs"]) for r in with_first) >= 5, "the ADE head must pair something for this to test"
    for p, g in zip(with_first, first_word):
        assert {drug_text(p, x) for x in p["pairs"]} <= {drug_text(g, g["pairs"][0])}
    alone = ade_distill.predict(student, tokenizer, test, meta)
    assert {drug_text(p, x) for p in alone for x in p["pairs"]} != {drug_text(p, x) for p in with_first
                                                                       for x in p["pairs"]}


def test_start_cost_decodes_one_encoder_pass_several_ways(trained, small, monkeypatch):
    student, tokenizer, meta = ade_distill.load_trained(trained)
    test = small["test"][:40]
    calls, forward = [], student.encoder.forward
    monkeypatch.setattr(student.encoder, "forward", lambda ids, mask: calls.append(len(ids)) or forward(ids, mask))
    by_cost = ade_distill.predict(student, tokenizer, test, meta, costs=[meta["start_cost"], 100.0])
    assert sum(calls) == len(test)  # each sentence through the encoder once, for both costs
    assert by_cost[0] == ade_distill.predict(student, tokenizer, test, meta)
    assert any(r["pairs"] for r in by_cost[0]) and not any(r["pairs"] for r in by_cost[1])  # O always wins


def test_start_cost_drops_weak_spans_whole_never_cuts_them():
    # tags O, B, I over four one-token words: a sure start, then two unsure inside tokens. Cost 1:
    # O B I I scores log(.9 * .7 * .55 * .55) - 1 = -2.66 against O B I O -2.98 and O O O O -3.55, so the
    # span is kept whole; a bonus of 1 for O at every token would cut it to O B O O. Cost 2: O O O O wins.
    probs = np.array([[0.9, 0.05, 0.05], [0.2, 0.7, 0.1], [0.4, 0.05, 0.55], [0.4, 0.05, 0.55]])
    viterbi = lambda scores: ade_distill.model.viterbi(scores[None], np.array([4]))[0].tolist()  # noqa: E731
    decode = lambda cost: viterbi(np.log(probs) - [0.0, cost, 0.0])  # noqa: E731
    assert decode(0.0) == decode(1.0) == [0, 1, 2, 2]
    assert decode(2.0) == [0, 0, 0, 0]
    assert viterbi(np.log(probs) + [1.0, 0.0, 0.0]) == [0, 1, 0, 0]


def test_k_fold_protocol_gives_one_table_of_every_fold(tiny_bert_dir, data_dir, tmp_path, capsys, monkeypatch):
    corpus = data.read_ade(data_dir)
    monkeypatch.setattr(data, "read_ade", lambda root: corpus)  # read once for the folds and the checks
    monkeypatch.setattr(data, "load_splits", lambda *a, **k: shrink(LOAD_SPLITS(*a, **k), 20))
    common = ["--cv=3", "--teacher=gold", "--epochs=1", "--max_steps=2", "--empty_ratio=0"]
    scores = ade_distill.main(args(tiny_bert_dir, tmp_path, *common))
    assert len(scores) == 3
    out = capsys.readouterr()
    for k in range(3):  # the gold teacher ignores --max_pool=64: every training sentence of the fold is used
        n = len(LOAD_SPLITS(data_dir, cv=3, fold=k)["train"])
        assert f"training set: {n} sentences with teacher labels + 0 without" in out.err
        row = next(r for r in json.load(open(tmp_path / f"fold{k}" / "results.json"))
                   if (r["system"], r["split"]) == ("student", "test"))
        assert scores[k] == [100 * row["strict"]["f1"], 100 * row["lenient"]["f1"]]
    table = (tmp_path / "cv_results.md").read_text().splitlines()
    assert [line.split(" |")[0] for line in table[2:]] == ["| 0", "| 1", "| 2", "| mean ± sd"]
    assert table[-1].startswith(f"| mean ± sd | {np.mean([s[0] for s in scores]):.2f} ± ")
    assert "\n".join(table) in out.out
    with pytest.raises(SystemExit, match="holds a finished run .fold0/results.json."):
        ade_distill.main(args(tiny_bert_dir, tmp_path, *common))


def test_the_llm_teacher_through_the_pipeline(small, tiny_bert_dir, tmp_path, server, capsys):
    """A perfect LLM (it answers each sentence's gold pairs) over HTTP, but for five test sentences it
    answers no JSON: those score as predicting nothing, and the run says how many; a rerun asks nothing."""
    gold = {r["text"]: r for r in small["test+neg"] + small["train"] + small["negatives"]}
    garbled = {r["text"] for r in small["test"][:5]}

    def handle(h):
        text = json.loads(h.body)["messages"][-1]["content"].removeprefix("Sentence: ")
        r = gold[text]
        pairs = [{"drug": text[slice(*p["drug"])], "adverse_event": text[slice(*p["ade"])]} for p in r["pairs"]]
        content = "I cannot tell." if text in garbled else json.dumps({"pairs": pairs})
        server.reply(h, 200, json.dumps({"choices": [{"message": {"content": content}, "finish_reason": "stop"}],
                                         "usage": {"prompt_tokens": 50, "completion_tokens": 10}}))
    server.handle = handle
    llm = ["--teacher=llm", f"--base_url={server.url}/v1", "--llm_model=m", f"--cache={tmp_path / 'c.jsonl'}",
           "--max_pool=16", "--epochs=1"]
    rows = ade_distill.main(args(tiny_bert_dir, tmp_path / "run", *llm))
    err = capsys.readouterr().err
    asked = len(server.requests)
    assert asked == len({body for *_, body in server.requests}) == len({r["text"] for r in small["test+neg"]}) + 16
    assert f"the teacher gave no answer for 5 of the {len(small['test+neg'])} sentences it is scored on" in err
    teacher_test = next(r for r in rows if (r["system"], r["split"]) == ("teacher", "test"))["lenient"]
    n_gold = sum(len(evaluate_units([r])) for r in small["test"])
    missed = sum(len(evaluate_units([r])) for r in small["test"][:5])
    # the garbled sentences' pairs are all missed; of the others, alignment's closest pair may move one or two
    assert n_gold - missed - 2 <= teacher_test["tp"] <= n_gold - missed and teacher_test["n_gold"] == n_gold
    assert "teacher_unanswered=5" in open(tmp_path / "run" / "results.md").read()
    ade_distill.main(args(tiny_bert_dir, tmp_path / "run", *llm, "--overwrite=true"))
    assert len(server.requests) == asked  # every reply came from the cache
    rows = ade_distill.main(args(tiny_bert_dir, tmp_path / "only", *llm, "--eval_teacher_only=true"))
    assert {r["system"] for r in rows} == {"teacher"} and len(server.requests) == asked
    assert not (tmp_path / "only" / "student").exists()


def test_llm_plus_lexicon_scored_on_a_dev_sample_each_teacher_alone_and_a_rerun_asks_nothing(
        small, tmp_path, server, capsys):
    """--teacher=llm+lexicon --eval_split=dev --eval_sample=N: the N drawn sentences of dev+neg asked once,
    the union and each teacher scored on dev, dev+neg and dev 2+ drugs, with what the check took."""
    gold = {r["text"]: r for r in small["dev+neg"]}

    def handle(h):  # an LLM that finds each sentence's first gold pair only
        text = json.loads(h.body)["messages"][-1]["content"].removeprefix("Sentence: ")
        pairs = [{"drug": text[slice(*p["drug"])], "adverse_event": text[slice(*p["ade"])]}
                 for p in gold[text]["pairs"][:1]]
        server.reply(h, 200, json.dumps({"choices": [{"message": {"content": json.dumps({"pairs": pairs})}}],
                                         "usage": {"prompt_tokens": 50, "completion_tokens": 10}}))
    server.handle = handle
    check = [f"--out_dir={tmp_path / 'check'}", "--teacher=llm+lexicon", f"--base_url={server.url}/v1",
             "--llm_model=m", f"--cache={tmp_path / 'c.jsonl'}", "--eval_teacher_only", "--eval_split=dev",
             "--eval_sample=30", "--price_in=1", "--price_out=2"]
    rows = ade_distill.main(check)
    assert len(server.requests) == 30 and {r["system"] for r in rows} == {"teacher"}
    figures = {(r["teacher"], r["split"]): r["lenient"] for r in rows}
    assert {t for t, _ in figures} == {"llm+lexicon", "llm", "lexicon"}
    assert {s for _, s in figures} == {"dev", "dev+neg", "dev 2+ drugs"}
    llm, lexicon, union = (figures[t, "dev+neg"] for t in ("llm", "lexicon", "llm+lexicon"))
    assert llm["n_gold"] == union["n_gold"] and llm["precision"] == 1.0 and union["tp"] >= llm["tp"]
    assert llm["n_pred"] <= union["n_pred"] <= llm["n_pred"] + lexicon["n_pred"]
    notes = open(tmp_path / "check" / "results.md").read().split()
    assert {"requests=30", "prompt_tokens=1500", "completion_tokens=300", "cost_usd=0.0021"} <= set(notes)
    ade_distill.main([*check, "--overwrite"])
    assert len(server.requests) == 30  # the LLM's replies came from the cache, the lexicon asks nothing
    capsys.readouterr()
    ade_distill.main([f"--out_dir={tmp_path / 'dry'}", *check[1:7], "--dry_run"])  # the check on all of dev+neg
    err = capsys.readouterr().err
    assert len(server.requests) == 30 and "dry run: nothing sent" in err
    n_dev = len(small["dev+neg"])
    assert f"teacher llm: {n_dev} sentences, 30 cached, {n_dev - 30} to ask" in err


def test_labels_and_pool_files_never_let_a_test_sentence_in(tiny_run, tiny_bert_dir, small, tmp_path, capsys):
    labels = [json.loads(line) for line in open(os.path.join(tiny_run[0], "teacher_labels.jsonl"))][:30]
    leak = {**small["test"][0], "id": "elsewhere:0"}  # a test sentence under another id
    failed = {"id": "failed:0", "text": "No answer came for this one."}  # a failed reply: no "pairs"
    data_file = tmp_path / "labels.jsonl"
    data_file.write_text("".join(json.dumps(r) + "\n" for r in labels + [leak, failed]))
    rows = ade_distill.main(args(tiny_bert_dir, tmp_path / "labels", f"--labels={data_file}", "--epochs=1"))
    err = capsys.readouterr().err
    assert [(r["system"], r["teacher"]) for r in rows] == [("student", "labels")] * 3  # no test labels in it
    assert "1 " + str(data_file) + " sentences also occur in dev/test and are left out" in err
    assert "1 sentences have no teacher answer" in err and "dev score by start cost: 0: " in err
    n_labelled = sum(bool(r["pairs"]) for r in labels)
    assert f"training set: {n_labelled} sentences with teacher labels + {30 - n_labelled} without" in err
    # with the test split's sentences (not the ADE-free ones): teacher rows on test and test 2+ drugs only
    test_file = tmp_path / "with_test.jsonl"
    test_file.write_text(data_file.read_text() + "".join(json.dumps(r) + "\n" for r in small["test"]))
    rows = ade_distill.main(args(tiny_bert_dir, tmp_path / "with_test", f"--labels={test_file}", "--epochs=1"))
    teacher_rows = {r["split"]: r for r in rows if r["system"] == "teacher"}
    assert sorted(teacher_rows) == ["test", "test 2+ drugs"] and teacher_rows["test"]["lenient"]["f1"] == 1.0
    assert f"training set: {n_labelled} sentences with teacher labels + {30 - n_labelled} without" in \
        capsys.readouterr().err  # the test sentences scored the teacher, and were not trained on

    pool_file = tmp_path / "pool.jsonl"
    pool_file.write_text("".join(json.dumps({"id": r["id"], "text": r["text"]}) + "\n" for r in labels + [leak]))
    ade_distill.main(args(tiny_bert_dir, tmp_path / "pool", f"--pool={pool_file}", "--epochs=1"))
    err = capsys.readouterr().err
    assert "1 " + str(pool_file) + " sentences also occur in dev/test" in err
    n_scored = len(small["test+neg"]) + len(small["dev+neg"])  # the lexicon also labels dev+neg
    assert f"({n_scored} scored and 30 pool sentences)" in err
    assert "dev+neg lenient precision by start cost (the teacher's: " in err
    assert len(open(tmp_path / "pool" / "teacher_labels.jsonl").readlines()) == 30


def test_training_set_keeps_every_labelled_sentence_and_a_share_of_empty_ones():
    labels = [{"id": str(i), "text": "t", "pairs": [{"drug": [0, 1], "ade": [0, 1]}] if i < 10 else []}
              for i in range(100)]
    for ratio, n_empty in ((0, 0), (0.5, 5), (2, 20), (-1, 90)):
        kept = ade_distill.teacher.training_set(labels, ratio, seed=0)
        assert [r["id"] for r in kept[:10]] == [str(i) for i in range(10)] and len(kept) == 10 + n_empty
    assert ade_distill.teacher.training_set(labels, 0.5, seed=0) == ade_distill.teacher.training_set(labels, 0.5, seed=0)


@pytest.mark.parametrize("option, message", [
    ("--batch_size=0", "--batch_size=0: must be at least 1"), ("--epochs=0", "--epochs=0: must be at least 1"),
    ("--empty_ratio=-0.5", "--empty_ratio=-0.5: 0 or more, or -1"),
    ("--min_confidence=1.5", "--min_confidence=1.5 --target_precision=0: each between 0 and 1"),
    ("--target_precision=-0.1", "--min_confidence=0 --target_precision=-0.1: each between"), ("--device=gpu", "--device=gpu: choose one of"),
    ("--head=Plain", "--head=Plain: choose one of drug, plain"), ("--task=nre", "--task=nre: choose"),
    ("--api_key_env=sk-abc123", "--api_key_env takes the NAME"), ("--teacher=gpt", "--teacher=gpt: choose one of"),
    ("--json_mode=yes", "--json_mode=yes: expected true or false"),
    ("--max_cost=5", "--max_cost needs the prices"), ("--dry_run=true", "--dry_run=true is for --teacher=llm"),
    ("--task=ner", "--task=ner --dataset=ade: the ADE task reads"), ("--concurrency=0", "--concurrency=0: must be"),
    ("--max_pool=-1", "--max_pool=-1: must be at least 0"),
    ("--task=ner --dataset=bc5cdr --cv=10", "--cv is the ADE corpus's protocol .--task=ade."),
    ("--head=plain --given_drugs", "--given_drugs is for the drug-centric head"),
    ("--predict=x --predict_file=/nonexistent", "pass --predict=TEXT or --predict_file=FILE, not both"),
    ("--teacher=llm+foo", "--teacher=llm+foo: choose one of lexicon, gold, llm, llm+lexicon"),
    ("--teacher=lexicon+lexicon", "--teacher=lexicon+lexicon: choose one of"),
    ("--shot_selection=similar", "--shot_selection=similar chooses the --shots=K examples: pass K > 0"),
    ("--eval_split=dev", "--eval_split and --eval_sample score the teacher alone: add --eval_teacher_only"),
    ("--eval_sample=5", "--eval_split and --eval_sample score the teacher alone"),
    ("--predict=x --target_precision=0.8", "--target_precision is for a run; to predict, pass --min_confidence=C"),
    ("--predict_out=p.jsonl", "--predict_out and --shard go with --predict_file=FILE"),
    ("--predict_file=/dev/null --shard=0/4", "--shard=0/4: K/N with 1 <= K <= N"),
    ("--predict_file=/dev/null --shard=5/4", "--shard=5/4: K/N"), ("--predict_file=/dev/null --shard=1", "--shard=1: K/N"),
    (f"--predict_file={__file__} --predict_out={__file__}", f"--predict_out={__file__} is the input file")])
def test_bad_options_stop_before_any_work(option, message, tmp_path):
    with pytest.raises(SystemExit, match="^error: " + message.replace("+", "\\+")):
        ade_distill.cli([*option.split(), f"--out_dir={tmp_path}", "--data_dir=/nonexistent"])
    assert not (tmp_path / "config.json").exists()


def test_predicting_without_a_trained_student_says_how_to_train_one(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"^{tmp_path} holds no trained student .student/student.json.; train "
                                         f"one first: python ade_distill.py --out_dir={tmp_path}$"):
        ade_distill.main([f"--out_dir={tmp_path}", "--predict=Aspirin-induced asthma."])


def test_a_users_error_is_one_line_and_a_bug_keeps_its_traceback(monkeypatch, tmp_path):
    def broken(*args, **kwargs):
        raise data.InputError("corpus.txt:3: expected 8 fields")
    monkeypatch.setattr(data, "load_splits", broken)
    with pytest.raises(SystemExit, match="^error: corpus.txt:3: expected 8 fields$"):
        ade_distill.cli([f"--out_dir={tmp_path}"])
    monkeypatch.setattr(data, "load_splits", lambda *a, **k: dict.fromkeys("ab")["c"])  # a KeyError: a bug
    with pytest.raises(KeyError):
        ade_distill.cli([f"--out_dir={tmp_path}", "--overwrite"])
    monkeypatch.setattr(data, "load_splits", lambda *a, **k: np.zeros(2).reshape(3))  # numpy's ValueError
    with pytest.raises(ValueError, match="cannot reshape"):
        ade_distill.cli([f"--out_dir={tmp_path}", "--overwrite"])


def test_the_files_are_checked_as_they_are_opened_before_any_request(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(data, "load_splits", LOAD_SPLITS)  # the real one: --cv=2 must reach it
    for option, message in [("--labels=/nonexistent.jsonl", "No such file or directory: '/nonexistent.jsonl'"),
                            ("--init_from=/nonexistent", "/nonexistent/model.safetensors not found"),
                            ("--cv=2", "--cv=2 fold 0: the protocol needs at least 3 folds"),
                            ("--eval_teacher_only --eval_sample=5000", "--eval_sample=5000: test has 2[0-9]{3} "
                             "sentences to draw from; pass at most that")]:
        with pytest.raises(SystemExit, match=message):
            ade_distill.cli([*option.split(), f"--out_dir={tmp_path}", "--overwrite"])
        assert "teacher:" not in capsys.readouterr().err


def test_the_program_imports_where_there_is_no_fcntl():
    """Windows has no fcntl: the append-only files then go unlocked, and everything else works."""
    code = "import sys; sys.modules['fcntl'] = None; import ade_distill, teacher, data; print(data.fcntl)"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout == "None\n", done.stderr


def test_unknown_and_mistyped_options_are_errors():
    with pytest.raises(SystemExit, match="unknown option --epoch;.*--epochs"):
        ade_distill.main(["--epoch=3"])
    with pytest.raises(SystemExit, match="--epochs=three: .*expected int"):
        ade_distill.main(["--epochs=three"])
    with pytest.raises(SystemExit, match="'--epochs' is not --key=value"):
        ade_distill.main(["--epochs"])
    assert ade_distill.Config.parse(["--overwrite"]).overwrite is True  # a bare flag


def test_a_labels_file_of_test_sentences_scores_the_teacher_alone(small, tmp_path, capsys):
    path = tmp_path / "labels.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in small["test"]))  # test, not test+neg
    rows = ade_distill.main([f"--out_dir={tmp_path / 'out'}", f"--labels={path}", "--eval_teacher_only"])
    assert [(r["system"], r["split"], r["lenient"]["f1"]) for r in rows] == \
        [("teacher", "test", 1.0), ("teacher", "test 2+ drugs", 1.0)]
    assert f"note: {path} does not label every sentence of test+neg: no teacher row there" in capsys.readouterr().err


def test_a_finished_run_is_not_replaced_without_overwrite(tiny_run, tiny_bert_dir, tmp_path):
    shutil.copytree(tiny_run[0], tmp_path, dirs_exist_ok=True)
    before = open(tmp_path / "results.json").read()
    with pytest.raises(SystemExit, match="holds a finished run .results.json.; pass another --out_dir"):
        ade_distill.main(args(tiny_bert_dir, tmp_path))
    assert open(tmp_path / "results.json").read() == before
    ade_distill.main(args(tiny_bert_dir, tmp_path, "--max_pool=24", "--epochs=1", "--overwrite=true"))
    assert json.load(open(tmp_path / "config.json"))["max_pool"] == 24
    assert len(open(tmp_path / "teacher_labels.jsonl").readlines()) == 24 and open(tmp_path / "results.json").read() != before


@pytest.mark.parametrize("case", ["empty", "all held out", "no text", "span outside", "not utf-8"])
def test_bad_labels_and_pool_files_are_named_before_any_work(case, small, tiny_bert_dir, tmp_path, capsys):
    text = "Aspirin caused a rash."
    path, option = tmp_path / "file.jsonl", "--labels"
    lines = {"empty": "",
             "all held out": json.dumps({**small["dev"][0], "id": "x:1"}) + "\n",
             "no text": json.dumps({"id": "x:1", "pairs": []}) + "\n",
             "span outside": json.dumps({"id": "x:1", "text": text, "pairs": [{"drug": [0, 7], "ade": [17, 40]}]})
             + "\n"}
    if case == "not utf-8":
        path.write_bytes(b'{"id": "1", "text": "ok"}\n{"id": "2", "text": "caf\xff"}\n')
        option = "--pool"
    else:
        path.write_text(lines[case])
    expected = {"empty": f"{path} holds no sentence to train on", "all held out": f"{path} holds no sentence",
                "no text": f'{path}:1: expected an object with "id" and a non-empty "text"',
                "span outside": f"{path}: sentence 1 .id x:1.: span \\[17, 40\\] is not",
                "not utf-8": f"{path}:2: not UTF-8 text"}[case]
    with pytest.raises((SystemExit, ValueError), match=expected):
        ade_distill.main(args(tiny_bert_dir, tmp_path / "out", f"{option}={path}"))
    assert "teacher:" not in capsys.readouterr().err and not (tmp_path / "out" / "student").exists()


@pytest.mark.parametrize("broken", ["tokenizer", "config", "max_len"])
def test_a_broken_student_directory_fails_before_the_teacher_is_paid(broken, small, tiny_bert_dir, tmp_path,
                                                                    capsys):
    student = tmp_path / "bert"
    shutil.copytree(tiny_bert_dir, student)
    extra = []
    if broken == "tokenizer":
        for name in ("tokenizer.json", "vocab.txt"):
            (student / name).unlink(missing_ok=True)
    elif broken == "config":
        (student / "config.json").write_text('{"model_type": "roberta"}')
    else:
        extra = ["--max_len=1024"]
    expected = {"tokenizer": "has no tokenizer.json", "config": "only BERT checkpoints",
                "max_len": "--max_len=1024 is longer than the .* encoder's 512 positions"}[broken]
    with pytest.raises((SystemExit, OSError, ValueError), match=expected):
        ade_distill.main([f"--init_from={student}", f"--out_dir={tmp_path / 'out'}", *extra])
    assert "teacher:" not in capsys.readouterr().err


def test_a_drug_of_the_labels_without_an_event_is_an_all_o_row(tiny_bert_dir, capsys):
    records = [{"id": "1", "text": "Aspirin caused rash.", "pairs": [{"drug": [0, 7], "ade": [15, 19]}]},
               {"id": "2", "text": "We gave aspirin again.", "pairs": []}]
    student = ade_distill.build_student(ade_distill.model.load_encoder(tiny_bert_dir), ade_distill.Config(), None)
    meta = {"task": "ade", "types": ["drug", "ade"], "max_len": 128}
    with_event, without = ade_distill.make_examples(records, ade_distill.model.load_tokenizer(tiny_bert_dir),
                                                    student, meta)
    assert [max(d["labels"]) for d in with_event["drugs"]] == [1]  # B on "rash"
    [row] = without["drugs"]  # "aspirin", known from the first sentence's labels: its ADE row is all O
    assert len(row["tokens"]) > 0 and set(row["labels"]) <= {0, -100}
    assert "drug negatives: 1 ADE-head rows" in capsys.readouterr().err


def test_the_loop_clips_and_decays_no_bias_or_layernorm(small, tiny_bert_dir, tmp_path, monkeypatch):
    groups, clips = [], []
    adamw, clip = torch.optim.AdamW, torch.nn.utils.clip_grad_norm_
    monkeypatch.setattr(torch.optim, "AdamW", lambda params, **k: groups.extend(params) or adamw(params, **k))
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", lambda p, norm: clips.append(norm) or clip(p, norm))
    ade_distill.main(args(tiny_bert_dir, tmp_path, "--max_pool=16", "--epochs=1", "--start_cost=0"))
    student = ade_distill.model.load_student(str(tmp_path / "student"))[0]
    names = {id(p): n for n, p in student.named_parameters()}
    decayed, free = groups
    assert decayed["weight_decay"] == ade_distill.WEIGHT_DECAY and free["weight_decay"] == 0.0
    assert len(decayed["params"]) + len(free["params"]) == len(names)
    assert all(p.ndim == 1 for p in free["params"])  # every bias and LayerNorm weight, nothing else
    assert sum(p.ndim == 1 for p in student.parameters()) == len(free["params"])
    assert clips == [ade_distill.GRAD_CLIP] * 2  # 16 sentences, 8 a batch


def test_the_dev_score_is_the_mean_of_strict_and_lenient_f1():
    assert ade_distill.dev_score({"strict": {"f1": 0.6}, "lenient": {"f1": 0.8}}) == pytest.approx(0.7)


def test_platt_scaling_recovers_a_known_map():
    rng = np.random.default_rng(0)
    raw = rng.uniform(0.02, 0.98, 20000)
    truth = 1 / (1 + np.exp(-(2.0 * np.log(raw / (1 - raw)) - 1.0)))  # the real chance of being correct
    a, b = evaluate.fit_platt(raw, (rng.uniform(size=raw.size) < truth).astype(float))
    assert a == pytest.approx(2.0, abs=0.1) and b == pytest.approx(-1.0, abs=0.1)
    assert evaluate.fit_platt(raw, np.ones_like(raw)) is None  # nothing to fit
    assert evaluate.fit_platt(raw, (raw < 0.5).astype(float)) is None  # it would reverse the ranking


def test_a_run_calibrates_and_chooses_the_threshold_on_dev_neg(small, tiny_bert_dir, tmp_path, capsys):
    rows = ade_distill.main(args(tiny_bert_dir, tmp_path, "--teacher=gold", "--empty_ratio=0", "--epochs=1",
                                 "--max_steps=80", "--batch_size=16", "--lr=1e-2", "--amp=fp32",
                                 "--target_precision=0.6"))  # as the fixture `trained`
    student, tokenizer, meta = ade_distill.load_trained(str(tmp_path))
    assert len(meta["calibration"]) == 2 and meta["calibration"][0] > 0
    raw = ade_distill.predict(student, tokenizer, small["dev+neg"], meta, raw=True)
    precision = lambda t: ade_distill.evaluate.score(small["dev+neg"], ade_distill.calibrated(  # noqa: E731
        raw, {**meta, "min_confidence": t}))["lenient"]["precision"]
    t = meta["min_confidence"]
    assert precision(0.0) < 0.6 <= precision(t) and precision(round(t - 0.01, 2)) < 0.6, t  # the lowest
    assert f"--min_confidence={t:g}: lenient precision {precision(t):.4f}" in capsys.readouterr().err
    kept = ade_distill.predict(student, tokenizer, small["test"], meta)
    assert all(p["confidence"] >= t for r in kept for p in r["pairs"])
    confidence = next(r for r in rows if (r["system"], r["split"]) == ("student", "test+neg"))["confidence"]
    assert set(confidence) == {"ece_raw", "ece", "at_threshold", "average_precision", "min_confidence"}
    assert confidence["min_confidence"] == t
    assert set(confidence["at_threshold"]) == {f"{x / 20:g}" for x in range(1, 20)} | {f"{t:g}"}
    assert confidence["at_threshold"][f"{t:g}"]["precision"] == pytest.approx(next(
        r for r in rows if (r["system"], r["split"]) == ("student", "test+neg"))["lenient"]["precision"])


def test_a_student_saved_without_calibration_says_so(trained, tmp_path, capsys):
    shutil.copytree(os.path.join(trained, "student"), tmp_path / "student")
    meta = json.load(open(tmp_path / "student" / "student.json"))
    del meta["calibration"]
    (tmp_path / "student" / "student.json").write_text(json.dumps(meta))
    capsys.readouterr()
    *_, loaded = ade_distill.load_trained(str(tmp_path))
    assert capsys.readouterr().err.count("saved without a calibration") == 1 and "calibration" not in loaded


def test_lr_schedule_warms_up_then_decays_to_zero():
    assert [ade_distill.lr_scale(step, 100, 0.1) for step in (0, 9, 10, 55, 100)] == [0.1, 1.0, 1.0, 0.5, 0.0]
    assert ade_distill.lr_scale(0, 1, 0.0) == 1.0  # no warmup asked: one step at the peak


def test_given_drugs_run_has_no_test_neg_row(small, tiny_bert_dir, tmp_path):
    rows = ade_distill.main(args(tiny_bert_dir, tmp_path, "--given_drugs=true", "--max_pool=16", "--epochs=1",
                                 "--lr=0"))  # lr 0: the schedule must not divide by it
    assert {r["split"] for r in rows} == {"test", "test 2+ drugs"} and all(r["given_drugs"] for r in rows)


def test_best_score_at_the_teachers_precision(capsys):
    scores, precisions = [0.70, 0.76, 0.75, 0.72], [0.45, 0.52, 0.56, 0.61]
    assert ade_distill.best_at_precision(scores, precisions, 0.40) == 1  # every cost qualifies: the best score
    assert ade_distill.best_at_precision(scores, precisions, 0.55) == 2  # the best among the precise enough
    assert ade_distill.best_at_precision(scores, precisions, 0.61) == 3
    assert capsys.readouterr().err == ""
    assert ade_distill.best_at_precision(scores, precisions, 0.70) == 1  # none qualifies: the best score, said
    assert "no start cost reaches the teacher's precision" in capsys.readouterr().err


def test_precision_choice(monkeypatch, tmp_path):
    def on_cpu(flags):  # a /proc/cpuinfo of two cores with these flags
        path = tmp_path / "cpuinfo"
        path.write_text("".join(f"processor\t: {k}\nflags\t\t: fpu sse2 avx2 {flags}\n\n" for k in (0, 1)))
        return model.choose_precision(torch.device("cpu"), "auto", str(path))

    native = (torch.bfloat16, False, "--amp=auto: this CPU has avx512_bf16")
    assert on_cpu("avx512f avx512_bf16 avx512_vnni") == native  # AMD Zen 4, Intel Cooper Lake
    assert on_cpu("avx512f amx_tile amx_bf16 amx_int8")[0] == torch.bfloat16  # Sapphire Rapids and later
    avx512 = (None, False, "--amp=auto: no avx512_bf16 or amx_bf16 on this CPU")
    assert on_cpu("avx512f avx512bw avx512_vnni") == avx512  # AVX-512 without bf16: Skylake, Ice Lake
    assert on_cpu("")[0] is None
    missing = model.choose_precision(torch.device("cpu"), "auto", str(tmp_path / "no_such_file"))
    assert missing[:2] == (None, False)  # macOS, Windows: no /proc/cpuinfo, fp32
    assert model.choose_precision(torch.device("cpu"), "fp32", str(tmp_path / "cpuinfo"))[0] is None
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
    assert model.choose_precision(torch.device("cuda"), "auto")[:2] == (torch.bfloat16, False)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: False)
    assert model.choose_precision(torch.device("cuda"), "auto")[:2] == (torch.float16, True)
    # a T4 or V100: bf16 only emulated, so fp16 with a GradScaler
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: including_emulation)
    assert model.choose_precision(torch.device("cuda"), "auto")[:2] == (torch.float16, True)


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_autocast_and_scaler_paths_run_on_cpu(small, tiny_bert_dir, tmp_path, amp, capsys, monkeypatch):
    """The CUDA AMP code paths, exercised with CPU autocast (fp16 also through the GradScaler)."""
    dtypes, scales = set(), []
    forward = ade_distill.model.BertModel.forward
    monkeypatch.setattr(ade_distill.model.BertModel, "forward",
                        lambda self, *a: dtypes.add(torch.get_autocast_dtype("cpu") if
                                                     torch.is_autocast_enabled("cpu") else None) or forward(self, *a))
    step = torch.amp.GradScaler.step
    monkeypatch.setattr(torch.amp.GradScaler, "step",
                        lambda self, *a, **k: scales.append(self.is_enabled() and self.get_scale()) or step(self, *a, **k))
    ade_distill.main(args(tiny_bert_dir, tmp_path, f"--amp={amp}", "--max_pool=32", "--epochs=1"))
    history = torch.load(tmp_path / "last" / "train_state.pt", weights_only=True)["history"]
    assert len(history) == 4 and all(np.isfinite(history)) and max(history) < 5
    assert dtypes == {getattr(torch, {"bf16": "bfloat16", "fp16": "float16"}[amp])}
    assert len(scales) == 4 and (all(s >= 1 for s in scales) if amp == "fp16" else scales == [False] * 4)
    expected = "precision: bfloat16 on cpu" if amp == "bf16" else "precision: float16 with GradScaler on cpu"
    assert expected in capsys.readouterr().err


def test_ner_and_plain_head_ablation(tiny_bert_dir, data_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(data, "load_splits", lambda *a, **k: shrink(LOAD_SPLITS(*a, **k), 20))
    rows = ade_distill.main(args(tiny_bert_dir, tmp_path / "ner", "--task=ner", "--dataset=ncbi_disease",
                                 "--epochs=1"))
    assert [(r["system"], r["split"]) for r in rows] == [("teacher", "test"), ("student", "test")]
    assert set(rows[0]["per_type"]) == {"Disease"}
    rows = ade_distill.main([f"--init_from={tiny_bert_dir}", f"--out_dir={tmp_path / 'plain'}", "--head=plain",
                             "--teacher=gold", "--empty_ratio=0", "--epochs=1", "--max_steps=80", "--batch_size=16",
                             "--lr=1e-2", "--amp=fp32"])  # as the fixture `trained`, with the plain head
    plain = next(r for r in rows if (r["system"], r["split"]) == ("student", "test"))["lenient"]
    assert plain["n_pred"] > 0 and plain["tp"] > 0, plain  # it pairs every ADE it finds with every drug
    student, meta = ade_distill.model.load_student(str(tmp_path / "plain" / "student"))
    assert meta["model"] == "ner" and meta["types"] == ["drug", "ade"]


def test_token_budget_micro_batches_take_the_same_steps(tiny_bert_dir, ade_splits, tmp_path, monkeypatch):
    """A batch of long sentences runs as micro-batches of one optimizer step: with dropout off, the losses
    of two steps are those of the whole batches, up to floating-point summation order."""
    model = ade_distill.model
    tokenizer = model.load_tokenizer(tiny_bert_dir)
    meta = {"task": "ade", "types": ["drug", "ade"], "max_len": 128}
    histories = []
    for budget in (4096, 64):
        monkeypatch.setattr(ade_distill, "MAX_BATCH_TOKENS", budget)
        cfg = ade_distill.Config(out_dir=str(tmp_path / str(budget)), batch_size=8, epochs=1, max_steps=2, lr=1e-3,
                                 amp="fp32")  # bf16 would round the two summation orders apart
        torch.manual_seed(0)  # the same fresh heads
        student = model.AdeModel(model.load_encoder(tiny_bert_dir, 0.0), 0.0)
        examples = ade_distill.make_examples(ade_splits["train"][:16], tokenizer, student, meta)
        lengths = [len(x["ids"]) for x in examples]
        assert len(data.split_by_tokens(list(range(8)), lengths, budget)) == (1 if budget == 4096 else 8)
        state = ade_distill.train(student, examples, ade_splits["dev"][:4], tokenizer, tiny_bert_dir, meta, cfg)
        histories.append(state["history"])
    assert len(histories[0]) == 2 and histories[0] == pytest.approx(histories[1], rel=1e-5)


# ----------------------------------------------------------------------------- the command line, for real

def cli(*argv, **kwargs):
    return subprocess.run([sys.executable, os.path.join(ROOT, "ade_distill.py"), *argv], capture_output=True,
                          text=True, **kwargs)


@pytest.mark.slow
def test_resume_after_a_kill_reaches_the_same_weights(tiny_bert_dir, data_dir, tmp_path):
    common = ["--max_pool=160", "--epochs=2", f"--data_dir={data_dir}"]
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    assert cli(*args(tiny_bert_dir, whole, *common)).returncode == 0
    proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "ade_distill.py"), *args(tiny_bert_dir, cut, *common)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 600  # generous: a busy machine is slow to reach its first checkpoint
    while not (cut / "last" / "train_state.pt").exists() and time.time() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    if (cut / "last").exists():  # the worst moment to be killed: between the two renames of a checkpoint swap
        shutil.rmtree(cut / "last.old", ignore_errors=True)
        os.replace(cut / "last", cut / "last.old")
    saved_at = cut / "last.old"
    step = torch.load(saved_at / "train_state.pt", weights_only=True)["step"]
    assert step < 40, "the run must be cut before its 40 steps"
    resumed = cli(*args(tiny_bert_dir, cut, *common), "--resume=true")
    assert resumed.returncode == 0, resumed.stderr
    assert f"resumed from {saved_at} at step {step}" in resumed.stderr
    for name in ("model.safetensors", "heads.safetensors"):
        a, b = load_file(str(whole / "last" / name)), load_file(str(cut / "last" / name))
        assert all(torch.equal(a[k], b[k]) for k in a), name
    assert json.load(open(whole / "results.json")) == json.load(open(cut / "results.json"))


@pytest.mark.slow
def test_a_kill_during_the_end_of_epoch_evaluation_resumes_into_it(tiny_bert_dir, data_dir, tmp_path):
    # 160 sentences / 8 = 20 steps: the checkpoint of step 20, the end of epoch 1, is written just
    # before epoch 1's evaluation. Killed during that evaluation, the run has no student/ yet, no best score.
    common = [*args(tiny_bert_dir, tmp_path, "--max_pool=160", "--epochs=1"), f"--data_dir={data_dir}"]
    proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "ade_distill.py"), *common],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 600
    while not (tmp_path / "last" / "train_state.pt").exists() and time.time() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    err = proc.communicate()[1]
    assert "epoch 1: dev" not in err and not (tmp_path / "student").exists(), "killed inside the evaluation"
    state = torch.load(tmp_path / "last" / "train_state.pt", weights_only=True)
    assert (state["step"], state["evaluated"], state["best_score"]) == (20, 0, -1.0)
    resumed = cli(*common, "--resume=true")
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed from" in resumed.stderr and "epoch 1: dev lenient F1" in resumed.stderr
    assert "| loss" not in resumed.stderr and (tmp_path / "student").exists()  # nothing trained twice
    changed = cli(*common, "--resume=true", "--batch_size=4")
    assert changed.returncode != 0 and "resume with the same options" in changed.stderr


@pytest.mark.slow
def test_errors_on_the_command_line_are_one_line(trained, data_dir, tmp_path):
    offline = cli("--init_from=hf:org/bert", f"--data_dir={data_dir}", f"--out_dir={tmp_path / 'hf'}",
                  cwd=tmp_path, env={**os.environ, "HF_ENDPOINT": "http://127.0.0.1:9"})
    assert offline.returncode != 0 and "Traceback" not in offline.stderr
    assert offline.stderr.strip().splitlines()[-1].startswith("error: cannot reach http://127.0.0.1:9/org/bert/")
    assert "teacher:" not in offline.stderr  # the download comes before the teacher labels anything

    shutil.copytree(trained, tmp_path / "cut", ignore=shutil.ignore_patterns("last*"))
    heads = tmp_path / "cut" / "student" / "heads.safetensors"
    heads.write_bytes(heads.read_bytes()[:100])
    cut = cli(f"--out_dir={tmp_path / 'cut'}", "--predict=Aspirin gave rash.")
    assert cut.returncode != 0 and "Traceback" not in cut.stderr
    assert cut.stderr.strip().splitlines()[-1].startswith(f"error: {heads} is not a readable safetensors file")
    bad = cli("--epochs=0")
    assert bad.returncode != 0 and bad.stderr.strip() == "error: --epochs=0: must be at least 1"
