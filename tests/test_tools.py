"""The dev scripts of tests/tools/, each run once in a tiny form (a few sentences, a tiny random BERT, a local
server): their figures mean nothing here, but a change of the project's API that breaks a script fails the
suite instead of the next person who runs it."""
import json
import os
import re
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOLS = os.path.join(ROOT, "tests", "tools")


def run_tool(name, *args, data_dir=None, timeout=300):
    """python tests/tools/NAME ARGS from the repository root -> the finished process (its exit status 0)."""
    env = {**os.environ, **({"ADE_DISTILL_DATA": data_dir} if data_dir else {})}
    done = subprocess.run([sys.executable, os.path.join(TOOLS, name), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, \
        f"{name} exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def trained_out(tmp_path_factory, tiny_bert_dir, data_dir):
    """A tiny student trained by the pipeline itself (lexicon teacher, 32 pool sentences, one epoch) at a
    fixed start cost: the choice on dev+neg would decode its 2,107 sentences nine times."""
    import ade_distill
    out = str(tmp_path_factory.mktemp("trained"))
    ade_distill.main([f"--init_from={tiny_bert_dir}", f"--out_dir={out}", f"--data_dir={data_dir}",
                      "--max_pool=32", "--epochs=1", "--batch_size=8", "--start_cost=1.0"])
    return out


def test_the_fixture_holds_make_fixtures_inputs(minilm_dir):
    # make_fixtures.py needs `transformers` for the reference outputs it records, which is not installed
    # here; what it feeds Hugging Face's BertModel needs only the tokenizer, and must be the fixture's.
    from safetensors.torch import load_file
    sys.path.insert(0, TOOLS)
    import make_fixtures
    input_ids, attention_mask = make_fixtures.inputs(minilm_dir)
    fixture = load_file(make_fixtures.OUT)
    assert torch.equal(fixture["input_ids"], input_ids) and torch.equal(fixture["attention_mask"], attention_mask)


def test_rss_timeline_wraps_a_command():
    command = [sys.executable, "-c", "import sys; print('one line', file=sys.stderr); sys.exit(3)"]
    done = subprocess.run([sys.executable, os.path.join(TOOLS, "rss_timeline.py"), *command], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 3  # the command's own exit status
    first, last = done.stderr.splitlines()[0], done.stderr.splitlines()[-1]
    assert "| RSS" in first and "| peak" in first and first.endswith("] one line")
    assert "exit 3; peak RSS" in last


@pytest.mark.slow
def test_start_cost_sweep(trained_out, data_dir):
    done = run_tool("start_cost_sweep.py", "--first=20", trained_out, trained_out, data_dir=data_dir)
    tables = done.stdout.strip().split("\n\n")
    assert len(tables) == 2  # one per trained out_dir given
    for table in tables:
        lines = table.strip().splitlines()
        assert "its start cost: 1.0" in lines[0]
        assert lines[1].startswith("| start cost | dev score | dev | dev+neg | test | test+neg |")
        import ade_distill
        assert [float(line.split("|")[1]) for line in lines[3:]] == ade_distill.COST_GRID


def test_calibration_noise_floor_on_hand_made_pairs():
    """Worked out by hand, a calibrated student's error: two pairs at 0.5 (one bin) are correct in one of
    them half the time (error 0), else in both or neither (0.5): mean 0.25; pairs at 0.9 and 0.1 (two bins):
    E|y - 0.9| = 0.9 x 0.1 + 0.1 x 0.9 = 0.18, and so for 0.1: mean 0.18."""
    sys.path.insert(0, TOOLS)
    import calibration_noise
    assert abs(calibration_noise.floor(np.array([0.5, 0.5]), draws=4000).mean() - 0.25) < 0.02
    assert abs(calibration_noise.floor(np.array([0.9, 0.1]), draws=4000).mean() - 0.18) < 0.02


def test_calibration_noise_crossfits_on_disjoint_folds(monkeypatch):
    """Each of the 5 x 20 fits sees four fifths of the pairs, and reads the fifth it never saw."""
    sys.path.insert(0, TOOLS)
    import calibration_noise
    fitted, read = [], []
    monkeypatch.setattr(calibration_noise.evaluate, "fit_platt", lambda c, y: fitted.append(set(c)))
    monkeypatch.setattr(calibration_noise.evaluate, "platt", lambda c, fit: read.append(set(c)) or c)
    confidences = np.linspace(0.01, 0.99, 50)
    calibration_noise.crossfitted_error(confidences, confidences > 0.5)
    assert len(fitted) == len(read) == 100 and all(len(f) == 40 for f in fitted)
    assert all(f.isdisjoint(r) and f | r == set(confidences) for f, r in zip(fitted, read))


def test_calibration_noise_reads_the_pairs_the_run_scored(trained_out, data_dir, tmp_path):
    run_tool("calibration_noise.py", f"--runs={trained_out}", "--draws=20", f"--out_dir={tmp_path}",
             data_dir=data_dir)
    row = open(tmp_path / "calibration_noise.md").read().splitlines()[2].split(" | ")
    scored = next(r for r in json.load(open(os.path.join(trained_out, "results.json"))) if "confidence" in r)
    assert row[0] == f"| {os.path.basename(trained_out)}"
    assert abs(float(row[2]) - scored["confidence"]["ece"]) <= 0.0005 + 1e-9  # the ECE the run read


def test_memory_probe(tiny_bert_dir, data_dir):
    done = run_tool("memory_probe.py", "3", "--sentences=48", "--predict=16", f"--init_from={tiny_bert_dir}",
                    data_dir=data_dir)
    assert done.stdout.startswith("start: RSS")
    assert "training: " in done.stdout and "for 3 steps" in done.stdout
    assert "predicting test+neg: " in done.stdout


def test_benchmark_takes_the_encoders_turns_while_the_run_is_stopped(tmp_path):
    """Row 6's reference: a real child writing a line every 0.1 s of its CPU time, stopped by SIGSTOP during
    each turn (its file does not grow while a turn sleeps 0.3 s), its time counted without the turns'."""
    sys.path.insert(0, TOOLS)
    import benchmark
    out = str(tmp_path / "out.txt")
    child = ("import sys, time\nfor i in range(12):\n    open(sys.argv[1], 'a').write(f'{i}\\n')\n"
             "    while time.process_time() < 0.1 * (i + 1):\n        pass\n")  # stopped, its clock stops
    seen = []

    def written():
        return open(out).read().count("\n") if os.path.exists(out) else 0

    def turn(start):
        before = written()
        time.sleep(0.3)
        seen.append((start, before, written()))
        return 100, 0.5

    t0 = time.perf_counter()
    wall, rate, turns = benchmark.in_turns([sys.executable, "-c", child, out], out, turn, every=0.25)
    elapsed = time.perf_counter() - t0
    assert turns == len(seen) >= 3 and rate == 200
    assert all(before == after == start for start, before, after in seen)  # stopped: nothing written
    assert [start for start, _, _ in seen] == sorted(start for start, _, _ in seen) and seen[-1][0] == 12
    assert 1.2 <= wall <= elapsed - 0.3 * (turns - 1)


@pytest.mark.slow
def test_benchmark_tiny(tiny_bert_dir, data_dir):
    done = run_tool("benchmark.py", "--tiny", "--row=1,2,3,4,8,9,11", f"--init_from={tiny_bert_dir}",
                    data_dir=data_dir)
    table = [line for line in done.stdout.splitlines() if line.startswith("| ") and line[2].isdigit()]
    # rows 1 and 2 once a precision (fp32, and bf16 where the CPU has it), row 3 twice (gold, synthetic)
    numbers = [line.split(".")[0] for line in table]
    assert list(dict.fromkeys(numbers)) == ["| 1", "| 2", "| 3", "| 4", "| 8", "| 9", "| 11"]
    assert numbers.count("| 3") == 2 and "same matches: True" in table[-2]


@pytest.mark.slow
def test_benchmark_tiny_subprocess_rows(tiny_bert_dir, data_dir):
    """Rows 5 (the LLM teacher against a slow local server), 6 (--predict_file end to end) and 10
    (micro-batches, peak memory of each side in its own process); 7 says it is skipped without CUDA."""
    done = run_tool("benchmark.py", "--tiny", "--row=5,6,7,10", f"--init_from={tiny_bert_dir}",
                    data_dir=data_dir)
    table = [line for line in done.stdout.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert sorted({line.split(".")[0] for line in table}) == ["| 10", "| 5", "| 6", "| 7"]


@pytest.mark.slow
def test_real_llm_against_a_local_server(server, tiny_bert_dir, data_dir, tmp_path):
    """The whole script against the suite's HTTP server: the 'LLM' answers the first and last words of each
    sentence as a (drug, adverse event) pair, so the student has labels to learn from."""
    def handle(h):
        body = json.loads(h.body or b"{}")
        text = body["messages"][-1]["content"].removeprefix("Sentence: ") if "messages" in body else ""
        words = [w for w in text.split() if w.isalpha()]
        pairs = [{"drug": words[0], "adverse_event": words[-1]}] if len(words) > 1 else []
        server.reply(h, 200, json.dumps({"choices": [{"message": {"content": json.dumps({"pairs": pairs})},
                                                      "finish_reason": "stop"}],
                                         "usage": {"prompt_tokens": 10, "completion_tokens": 5}}))
    server.handle = handle
    out = tmp_path / "real_llm"
    done = run_tool("real_llm.py", f"--base_url={server.url}/v1", f"--out_dir={out}", "--pool=24", "--test=16",
                    "--dev_sample=20", "--epochs=1", f"--init_from={tiny_bert_dir}", "--start_cost=1.0",
                    data_dir=data_dir)
    for row in ("dev: llm+lexicon, 5-shot similar", "test: llm, 0-shot", "test: lexicon",
                "test: llm+lexicon, 5-shot random", "test: llm, 5-shot similar"):
        assert f"| {row} |" in done.stdout
    assert done.stdout.count("| test: student (") == 2
    assert (out / "real_llm.md").read_text().strip() == done.stdout.strip()
    posts = sum(1 for method, path, _, _ in server.requests if method == "POST")
    assert posts in (2 * 20 + 3 * 16 + 24, 2 * 20 + 3 * 16 + 2 * 24)  # the pool once per shot selection


@pytest.mark.slow
def test_reproduce_then_results(tmp_path, tiny_bert_dir, data_dir):
    """reproduce.sh runs the named runs into RUNS_DIR (tiny: EXTRA options), skips those already done, and
    results.py writes their section from their files and names the runs still missing."""
    env = {**os.environ, "RUNS_DIR": str(tmp_path), "ADE_DISTILL_DATA": os.path.abspath(data_dir),
           "EXTRA": f"--init_from={tiny_bert_dir} --max_pool=16 --epochs=1 --batch_size=8 --start_cost=1"}
    names = ["default_s0", "default_s1", "default_s2"]
    done = subprocess.run(["bash", os.path.join(TOOLS, "reproduce.sh"), *names], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    run = json.load(open(tmp_path / "default_s1" / "run.json"))
    expected = f"python ade_distill.py --seed=1 --out_dir={tmp_path}/default_s1 --init_from="
    assert run["command"].startswith(expected)
    again = subprocess.run(["bash", os.path.join(TOOLS, "reproduce.sh"), "default_s1"], cwd=ROOT, env=env,
                           capture_output=True, text=True, timeout=60)
    assert again.stdout == "default_s1: done, skipped\n"
    table = run_tool("results.py", str(tmp_path)).stdout
    rows = json.load(open(tmp_path / "default_s2" / "results.json"))
    student = next(r for r in rows if r["system"] == "student" and r["split"] == "test+neg")
    assert f"| seed 2 | student (lexicon) | test+neg | {100 * student['strict']['precision']:.2f} | " in table
    assert "Not yet run: supervised_s0, supervised_s1, supervised_s2" in table
    assert "Not yet run in full (0 of 10 folds)" in table


def test_every_figure_of_the_readme_is_one_of_results_md():
    """The README copies its figures from RESULTS.md (which a script writes from the runs): a percentage
    with two decimals, or an interval, that RESULTS.md does not hold is a figure typed by hand, or a stale
    one. (Settings such as a price of 0.15 have one digit before the point.)"""
    readme = open(os.path.join(ROOT, "README.md")).read()
    results = open(os.path.join(ROOT, "RESULTS.md")).read()
    figures = set(re.findall(r"\[\d+\.\d, \d+\.\d\]|(?<![\d.])\d\d+\.\d\d(?![\d.])", readme))
    assert figures, "the README quotes no figure: the pattern is wrong"
    missing = sorted(f for f in figures if not re.search(rf"(?<![\d.]){re.escape(f)}(?![\d])", results))
    assert not missing, f"in README.md but not in RESULTS.md: {missing}"
    # the one-decimal figures: the student's lead over its teacher, from the README's own table (above)
    lead = re.search(r"beats the term list it learnt from by (\d+\.\d) lenient and (\d+\.\d) strict F1", readme)
    row = lambda who: re.search(rf"\| {who} \| lexicon \| test \| [^|]+ \| [^|]+ \| (\d+\.\d\d) [^|]+ \| [^|]+ \| "  # noqa
                                rf"[^|]+ \| (\d+\.\d\d) ", readme).groups()
    (teacher_strict, teacher_lenient), (student_strict, student_lenient) = row("teacher"), row("student")
    assert lead and lead.groups() == (f"{float(student_lenient) - float(teacher_lenient):.1f}",
                                      f"{float(student_strict) - float(teacher_strict):.1f}")


def test_results_confidence_table_reads_the_student_at_the_teachers_recall(tmp_path, data_dir):
    """A hand-made run: the student's recall falls from 0.80 at 0.05 by 0.05 a step while its precision rises
    by 0.0125; the teacher's recall is 0.60, which the student reaches up to 0.25 (precision 0.5125)."""
    at = {f"{t:g}": {"precision": round(0.45 + t / 4, 4), "recall": round(max(0.85 - t, 0), 4)}
          for t in (k / 20 for k in range(1, 20))}
    lenient = {"precision": 0.55, "recall": 0.60, "f1": 0.57}
    rows = [{"system": "teacher", "teacher": "lexicon", "split": "test+neg", "strict": lenient,
             "lenient": lenient},
            {"system": "student", "teacher": "lexicon", "split": "test+neg", "strict": lenient,
             "lenient": lenient, "confidence": {"ece_raw": 0.3281, "ece": 0.0462, "average_precision": 0.481,
                                                "at_threshold": at, "min_confidence": 0.45}}]
    run = tmp_path / "default_s0"
    run.mkdir()
    (run / "results.json").write_text(json.dumps(rows))
    (run / "run.json").write_text(json.dumps({"command": "c", "commit": "x", "machine": "m", "date": "d"}))
    (run / "time.txt").write_text("Elapsed (wall clock) time (h:mm:ss or m:ss): 1:00\n"
                                  "Maximum resident set size (kbytes): 1024\n\tExit status: 0\n")
    gpu = tmp_path / "gpu"  # gpu.sh's run: its wall time in run.json, no time.txt
    gpu.mkdir()
    (gpu / "run.json").write_text(json.dumps({"command": "g", "commit": "y", "machine": "G", "date": "e",
                                              "wall_s": 155}))
    (gpu / "benchmark.md").write_text("| row | ade_distill |\n| --- | ---: |\n| 7. GPU predict | 3190 |\n")
    table = run_tool("results.py", str(tmp_path), data_dir=os.path.abspath(data_dir)).stdout
    assert "## On a GPU" in table and "`g`, commit y, G, e: 155 s in all.\n\n| row | ade_distill |" in table
    assert ("| default, seed 0 | 0.328 | 0.046 | 0.481 | 52.50 / 55.00 | 57.50 / 35.00 | 62.50 / 15.00 | "
            "67.50 / 0.00 | 0.45: 56.25 / 40.00 | 55.00 / 60.00 | 51.25 (at 0.25) |") in table
    assert "Not yet run: default_s1, default_s2, supervised_s0" in table


def test_the_readme_counts_the_options():
    import dataclasses
    import ade_distill
    readme = open(os.path.join(ROOT, "README.md")).read()
    assert f"({len(dataclasses.fields(ade_distill.Config))} options with the teacher's)" in readme.replace("\n", " ")


def test_the_readme_gives_each_options_default_and_the_fixed_constants():
    """The options table's defaults are Config's ("all" and "-" stand for 0 and none), and the fixed
    constants the README names are the code's."""
    import ade_distill
    import teacher
    readme = open(os.path.join(ROOT, "README.md")).read()
    cfg, shown = ade_distill.Config(), {"all": 0, "-": "", "false": False, "true": True}
    rows = re.findall(r"^\| ((?:`--\w+`(?:, )?)+) \| ([^|]+) \|", readme, re.M)
    assert len(rows) == 11, rows
    for names, defaults in rows:
        names, values = re.findall(r"`--(\w+)`", names), [v.strip() for v in defaults.split(",")]
        assert len(names) == len(values), names
        for name, value in zip(names, values):
            expected = getattr(cfg, name)
            number = type(expected) in (int, float)
            value = shown.get(value, value)
            assert (float(value) if number else value) == expected, (name, value, expected)
    fixed = " ".join(readme.split("\nFixed: ")[1].split("\n\n")[0].split())
    constants = [f"dropout {ade_distill.DROPOUT:g}", f"weight decay {ade_distill.WEIGHT_DECAY:g}",
                 f"warmup {100 * ade_distill.WARMUP:g} %", f"clipping {ade_distill.GRAD_CLIP:.1f}",
                 f"{100 * teacher.LEXICON_MIN_PRECISION:g} % precision floor"]
    assert all(c in fixed for c in constants), (constants, fixed)


def test_the_five_files_import_what_the_readme_says():
    """Run time: torch, tokenizers, safetensors, numpy and requests beside the standard library (the README's
    list, and requirements.txt's); from the project, what its "What is where" table names."""
    import ast
    runtime = {"torch", "tokenizers", "safetensors", "numpy", "requests"}
    project = {"ade_distill", "model", "teacher", "data", "evaluate"}
    required = {re.split(r"[=<>]", line)[0] for line in open(os.path.join(ROOT, "requirements.txt"))
                if line.strip() and not line.startswith("#")}
    readme = open(os.path.join(ROOT, "README.md")).read()
    said = re.search(r"no framework: (\w+), (\w+), (\w+), (\w+)\s+and (\w+)\.", readme)
    assert required == runtime == set(said.groups())
    table = readme.split("## What is where")[1].split("\n\n")[1]
    for name in project:
        tree = ast.parse(open(os.path.join(ROOT, name + ".py")).read())
        imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                    for alias in node.names}
        imported |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
        assert imported - sys.stdlib_module_names <= runtime | project, name
        ours = imported & project
        said = re.search(rf"^\| `{name}.py` \|.*\| ([^|]+) \|$", table, re.M).group(1).strip()
        assert ours == (set() if said == "nothing" else project - {name} if said == "all four" else
                        set(re.findall(r"`(\w+)`", said))), (name, ours, said)
