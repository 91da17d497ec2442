"""Speed and memory of ade_distill's parts: one table, every ratio against a reference measured in the
same run. Not collected by pytest (no test_ prefix); run it as

    python tests/tools/benchmark.py [--quick] [--row=10] [--out_dir=DIR]   # DIR/benchmark.md: the table

Rows 1-2 compare with Hugging Face's BertModel when `transformers` is installed (dev only; the row
says so when it is not). Rows 1, 2 and 6 run in fp32, and in bf16 where the CPU has it natively (where
--amp=auto takes it). Row 7 runs only where CUDA is present. --row=N[,N...] runs those rows alone;
--init_from=DIR measures another BERT directory than all-MiniLM-L6-v2; --student=DIR is the trained
out_dir row 6 predicts with (else untrained heads); --tiny cuts every size to a few sentences and
requests, a check that the script runs (tests/test_tools.py), whose figures mean nothing.
"""
import gc
import json
import os
import platform
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

import torch  # noqa: E402

import data  # noqa: E402
import model  # noqa: E402
import teacher  # noqa: E402

QUICK = TINY = False  # --quick, --tiny: set by main
ROWS = []


def row(name, ours, reference, ratio, note=""):
    ROWS.append((name, ours, reference, f"{ratio:.2f}x" if isinstance(ratio, float) else ratio, note))
    print(f"  {name}: {ours} vs {reference} -> {ROWS[-1][3]} {note}", file=sys.stderr, flush=True)


def seconds(*fns, repeat=3):
    """Best of `repeat` timed calls of each function, after one warm-up call each; the functions take
    turns, so a slow spell of a shared machine does not fall on one side only."""
    for fn in fns:
        fn()
    best = [float("inf")] * len(fns)
    for _ in range(repeat):
        for i, fn in enumerate(fns):
            t0 = time.perf_counter()
            fn()
            best[i] = min(best[i], time.perf_counter() - t0)
    return best if len(fns) > 1 else best[0]


def padded(encs, batch_ids):
    arrays = data.collate([{"ids": encs[i]["ids"]} for i in batch_ids])
    return torch.from_numpy(arrays["input_ids"]), torch.from_numpy(arrays["attention_mask"])


def hf_model(path):
    try:
        from transformers import BertModel
    except ImportError:
        return None
    return BertModel.from_pretrained(path, attn_implementation="sdpa", add_pooling_layer=False)


def precisions():
    """fp32, and bf16 where this CPU computes it natively (where --amp=auto takes it)."""
    return ["fp32"] + (["bf16"] if model.cpu_bf16_flag() else [])


def encoder_rows(path, encs, batches):
    """Rows 1-2: our encoder against Hugging Face's BertModel, in each precision of precisions()."""
    ours = model.load_encoder(path)
    hf = hf_model(path)
    inputs = [padded(encs, b) for b in batches]
    n, n4 = sum(len(b) for b in batches), sum(len(b) for b in batches[:4])
    cpu = torch.device("cpu")

    def forward(m, hugging_face, dtype):
        with torch.no_grad(), model.autocast(cpu, dtype):
            for ids, mask in inputs:
                m(input_ids=ids, attention_mask=mask) if hugging_face else m(ids, mask)

    def train_steps(m, hugging_face, opt, dtype):
        m.train()
        for ids, mask in inputs[:4]:
            with model.autocast(cpu, dtype):
                out = m(input_ids=ids, attention_mask=mask).last_hidden_state if hugging_face else m(ids, mask)
            out.float().pow(2).mean().backward()
            opt.step()
            opt.zero_grad()

    for precision in precisions():
        dtype = model.choose_precision(cpu, precision)[0]
        if hf is None:
            t_ours = seconds(lambda: forward(ours.eval(), False, dtype))
            row(f"1. encoder forward, {precision} CPU (sentences/s)", f"{n / t_ours:.0f}",
                "transformers not installed", "-")
        else:
            t_ours, t_hf = seconds(lambda: forward(ours.eval(), False, dtype),
                                   lambda: forward(hf.eval(), True, dtype))
            row(f"1. encoder forward, {precision} CPU (sentences/s)", f"{n / t_ours:.0f}",
                f"HF BertModel {n / t_hf:.0f}", t_hf / t_ours)
        opt_ours = torch.optim.AdamW(ours.parameters(), lr=1e-5)
        if hf is None:
            t_ours = seconds(lambda: train_steps(ours, False, opt_ours, dtype))
            row(f"2. training step fwd+bwd+AdamW, {precision} (sentences/s)", f"{n4 / t_ours:.0f}",
                "transformers not installed", "-")
        else:
            opt_hf = torch.optim.AdamW(hf.parameters(), lr=1e-5)
            t_ours, t_hf = seconds(lambda: train_steps(ours, False, opt_ours, dtype),
                                   lambda: train_steps(hf, True, opt_hf, dtype), repeat=5)
            row(f"2. training step fwd+bwd+AdamW, {precision} (sentences/s)", f"{n4 / t_ours:.0f}",
                f"HF BertModel {n4 / t_hf:.0f}", t_hf / t_ours)


def fan_out_rows(path, test, encs):
    torch.manual_seed(0)
    ade = model.AdeModel(model.load_encoder(path)).eval()

    def drugs_of(i, synthetic):
        if synthetic:  # 5 "drugs" per sentence: single tokens at positions 1..5
            return [[p] for p in range(1, min(6, len(encs[i]["ids"]) - 1))]
        record = test[i]
        entities = data.drug_entities(record["text"], [p["drug"] for p in record["pairs"]])
        return [data.token_mask(encs[i], mentions) for mentions in entities.values()]

    for synthetic in (False, True):
        batches = data.length_batches([len(e["ids"]) for e in encs], 32)
        prepared = []
        for b in batches:
            ids, mask = padded(encs, b)
            drugs = [(row_, tokens) for row_, i in enumerate(b) for tokens in drugs_of(i, synthetic)]
            token_mask = torch.zeros(len(drugs), ids.shape[1])
            for m, (_, tokens) in enumerate(drugs):
                token_mask[m, tokens] = 1
            prepared.append((ids, mask, torch.tensor([r for r, _ in drugs]), token_mask))
        n_drugs = sum(len(p[2]) for p in prepared)
        outputs = {}

        @torch.no_grad()
        def batched():
            outputs["batched"] = [ade(*p)[1] for p in prepared]

        @torch.no_grad()
        def per_drug():  # the paper's formulation: the sentence goes through the encoder once per drug
            outputs["per_drug"] = []
            for ids, mask, sentence, token_mask in prepared:
                hidden = ade.encoder(ids[sentence], mask[sentence])  # (M, T, D): M encoder passes
                v = (token_mask[..., None] * hidden).sum(1) / token_mask.sum(1, keepdim=True)
                outputs["per_drug"].append(
                    ade.ade_head(torch.cat([hidden, v[:, None].expand_as(hidden)], -1)))

        t_batched, t_per_drug = seconds(batched, per_drug, repeat=2)
        diff = max((a - b).abs().max().item() for a, b in zip(outputs["batched"], outputs["per_drug"]))
        name = "synthetic, 5 drugs/sentence" if synthetic else "ADE test split, gold drugs"
        row(f"3. drug fan-out, {name} (s)", f"{t_batched:.2f} s batched", f"{t_per_drug:.2f} s per drug",
            t_per_drug / t_batched, f"{n_drugs} drugs in {len(encs)} sentences; largest difference {diff:.1e}")


def bucketing_row(path, pool_encs):
    lengths = [len(e["ids"]) for e in pool_encs]
    encoder = model.load_encoder(path).train()
    order = list(range(len(lengths)))
    random.Random(0).shuffle(order)
    results = {}
    for name, batches in (("bucketed", data.length_batches(lengths, 32, shuffle=True)),
                          ("random", [order[i:i + 32] for i in range(0, len(order), 32)])):
        real = sum(lengths)
        slots = sum(len(b) * max(lengths[i] for i in b) for b in batches)
        sample = batches[:2 if TINY else 4 if QUICK else 12]
        inputs = [padded(pool_encs, b) for b in sample]

        def steps():
            for ids, mask in inputs:
                encoder(ids, mask).pow(2).mean().backward()

        t = seconds(steps, repeat=1)
        results[name] = (1 - real / slots, sum(len(b) for b in sample) / t)
    (pad_b, speed_b), (pad_r, speed_r) = results["bucketed"], results["random"]
    row("4. length bucketing vs random batches (train sentences/s)", f"{speed_b:.0f} ({pad_b:.0%} padding)",
        f"{speed_r:.0f} ({pad_r:.0%} padding)", speed_b / speed_r, f"{len(lengths)} pool sentences, batch 32")


BUDGET_CHILD = """
import sys, torch
sys.path.insert(0, {root!r})
import data, model
encoder, encs = model.load_encoder({path!r}).train(), {encs!r}
for part in data.split_by_tokens(list(range(len(encs))), [len(e) for e in encs], {budget}):
    n = -(-max(len(encs[i]) for i in part) // 8) * 8
    ids = torch.tensor([encs[i] + [0] * (n - len(encs[i])) for i in part])
    encoder(ids, (ids > 0).long()).pow(2).mean().backward()
print(int(open("/proc/self/status").read().split("VmHWM:")[1].split()[0]) // 1024)  # ru_maxrss survives exec
"""


def token_budget_row(path, pool_encs):
    """Row 10: forward + backward of a batch of 32 (the longest sentences, and sentences of the median
    length) whole, and as micro-batches of at most 2,048 and 1,024 padded tokens (the training loop's
    ade_distill.MAX_BATCH_TOKENS): time (the sides take turns) and peak memory (each side once in a fresh
    process)."""
    encoder = model.load_encoder(path).train()

    def step(inputs):
        return lambda: [encoder(ids, mask).pow(2).mean().backward() for ids, mask in inputs]

    by_length = sorted(range(len(pool_encs)), key=lambda i: -len(pool_encs[i]["ids"]))
    middle = len(by_length) // 2
    for name, batch in (("longest", by_length[:32]), ("median-length", by_length[middle:middle + 32])):
        lengths = {i: len(pool_encs[i]["ids"]) for i in batch}
        sides = {budget: [padded(pool_encs, part) for part in data.split_by_tokens(batch, lengths, budget)]
                 for budget in (10 ** 6, 2048, 1024)}
        times = seconds(*(step(inputs) for inputs in sides.values()),
                        repeat=1 if TINY else 2 if QUICK else 5)
        peaks = [int(subprocess.run([sys.executable, "-c", BUDGET_CHILD.format(
            root=ROOT, path=path, budget=budget, encs=[pool_encs[i]["ids"] for i in batch])],
            capture_output=True, text=True, check=True).stdout) for budget in sides]
        T = -(-max(lengths.values()) // 8) * 8
        for (budget, inputs), t, peak in list(zip(sides.items(), times, peaks))[1:]:
            row(f"10. {name} batch (32 x {T} tokens) as micro-batches of <= {budget} tokens (s, peak MiB)",
                f"{t:.2f} s, {peak} MiB ({len(inputs)} part{'s' * (len(inputs) > 1)})",
                f"{times[0]:.2f} s, {peaks[0]} MiB whole",
                times[0] / t, "fwd+bwd; the same gradient")


def serve_slow_replies(port_queue):
    """An OpenAI-style server answering every request after 200 ms (in its own process: no shared GIL)."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    reply = json.dumps({"choices": [{"message": {"content": '{"pairs": []}'}, "finish_reason": "stop"}],
                        "usage": {"prompt_tokens": 1, "completion_tokens": 1}}).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            time.sleep(0.2)  # simulated LLM latency
            self.send_response(200)
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, *args):
            pass

    class Server(ThreadingHTTPServer):
        daemon_threads = True
        request_queue_size = 128  # the listen backlog: 64 clients connect at once

    httpd = Server(("127.0.0.1", 0), Handler)
    port_queue.put(httpd.server_address[1])
    httpd.serve_forever()


def teacher_rows():
    import multiprocessing
    ports = multiprocessing.Queue()
    server = multiprocessing.Process(target=serve_slow_replies, args=(ports,), daemon=True)
    server.start()
    url = f"http://127.0.0.1:{ports.get(timeout=30)}/v1"
    with tempfile.TemporaryDirectory() as tmp:
        for c in (4,) if TINY else (1, 4, 16, 64):
            n = 8 if TINY else max(16, c * 4)
            sentences = [{"id": f"{c}:{i}", "text": f"Sentence {c} {i} with aspirin."} for i in range(n)]
            cfg = teacher.TeacherConfig(base_url=url, llm_model="m", concurrency=c,
                                        cache=os.path.join(tmp, f"{c}.jsonl"))
            t0 = time.perf_counter()
            teacher.label_llm(sentences, cfg, [])
            rate = n / (time.perf_counter() - t0)
            row(f"5. LLM teacher, 200 ms latency, concurrency {c} (sentences/s)", f"{rate:.1f}",
                f"ideal {c / 0.2:.0f}", rate / (c / 0.2), f"{n} requests")
        t0 = time.perf_counter()
        teacher.label_llm(sentences, cfg, [])
        rate = n / (time.perf_counter() - t0)
        row("5. LLM teacher, rerun from the cache (sentences/s)", f"{rate:.0f}", f"{c / 0.2:.0f} uncached",
            rate / (c / 0.2), "no request sent")
    server.terminate()


# ade_distill.py as its own program, writing its peak resident memory (VmHWM: reset by exec, unlike the
# ru_maxrss a child inherits from this large process) to the file named by its first argument at exit
PEAK_CHILD = """import atexit, runpy, sys
sys.path.insert(0, {root!r})
hwm = sys.argv.pop(1)
atexit.register(lambda: open(hwm, "w").write(open("/proc/self/status").read().split("VmHWM:")[1].split()[0]))
sys.argv[0] = {root!r} + "/ade_distill.py"
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def in_turns(command, out, turn, every=30.0):
    """Runs `command`, which writes a line of `out` per input line, and every `every` seconds stops it
    (SIGSTOP) while turn(k) times the bare encoder alone over the input lines from line k (the next ones
    the command reads), then resumes it (SIGCONT); one more turn after it ends. This VM's speed drifts by
    10-15 % within minutes: turns spread over the run see the drift the run sees, where a reference
    measured before and after a 10-minute run does not. -> (the command's unpaused seconds, the turns'
    sentences/s, their number)"""
    def lines():
        with open(out, "rb") if os.path.exists(out) else open(os.devnull, "rb") as f:
            return sum(block.count(b"\n") for block in iter(lambda: f.read(1 << 20), b""))

    turns, paused = [], 0.0
    with tempfile.TemporaryFile("w+") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=err)
        while True:
            try:
                proc.wait(timeout=every)
                break
            except subprocess.TimeoutExpired:
                t1 = time.perf_counter()
                os.kill(proc.pid, signal.SIGSTOP)
                while open(f"/proc/{proc.pid}/stat").read().rsplit(")", 1)[1].split()[0] not in "TZ":
                    time.sleep(0.001)  # until it has stopped (T), or ended (Z)
                turns.append(turn(lines()))
                os.kill(proc.pid, signal.SIGCONT)
                paused += time.perf_counter() - t1
        wall = time.perf_counter() - t0 - paused
        if proc.returncode:
            err.seek(0)
            sys.exit(f"error: --predict_file exited with status {proc.returncode}:\n{err.read()[-2000:]}")
    turns.append(turn(lines()))
    return wall, sum(n for n, _ in turns) / sum(t for _, t in turns), len(turns)


def prediction_rows(path, texts, sizes, student):
    """Row 6: `ade_distill.py --predict_file` end to end (start-up included) over each of `sizes` sentences
    (the corpus's, repeated), in each precision of precisions(), with the process's own peak resident
    memory (VmHWM), against the bare encoder's rate over the same sentences taken in turns with the run
    (in_turns). `student`: a trained out_dir (--student), else MiniLM with untrained heads."""
    with tempfile.TemporaryDirectory() as tmp:
        if not student:
            student = tmp
            torch.manual_seed(0)
            model.save_student(model.AdeModel(model.load_encoder(path)), os.path.join(tmp, "student"), path,
                               {"task": "ade", "types": ["drug", "ade"], "max_len": 128})
        encoder, tokenizer = model.load_encoder(path).eval(), model.load_tokenizer(path)
        for precision in precisions():
            dtype = model.choose_precision(torch.device("cpu"), precision)[0]
            runs = []  # (n, wall, the encoder's sentences/s, turns, peak MiB)
            for n in sizes:
                infile, out, hwm = (os.path.join(tmp, name) for name in (f"in{n}.jsonl", "out.jsonl", "hwm"))
                with open(infile, "w") as f:
                    f.writelines(json.dumps({"id": str(i), "text": texts[i % len(texts)]}) + "\n"
                                 for i in range(n))

                @torch.no_grad()
                def turn(start, size=10 if TINY else 1000):  # the encoder over input lines start.. (n, s)
                    lines = [texts[(start + i) % n % len(texts)] for i in range(size)]
                    encs = data.encode(tokenizer, lines, 128)
                    inputs = [padded(encs, b) for b in data.length_batches([len(e["ids"]) for e in encs], 64)]
                    t0 = time.perf_counter()
                    with model.autocast(torch.device("cpu"), dtype):
                        for ids, mask in inputs:
                            encoder(ids, mask)
                    return size, time.perf_counter() - t0

                if os.path.exists(out):
                    os.remove(out)
                turn(0)  # warm-up
                wall, rate, turns = in_turns([sys.executable, "-c", PEAK_CHILD.format(root=ROOT), hwm,
                                              f"--out_dir={student}", f"--predict_file={infile}",
                                              f"--amp={precision}", f"--predict_out={out}"], out, turn)
                runs.append((n, wall, rate, turns, int(open(hwm).read()) / 1024))
            for k, (n, wall, rate, turns, peak) in enumerate(runs):
                row(f"6. --predict_file, {n:,} sentences, {precision} (sentences/s)", f"{n / wall:.0f}",
                    f"encoder alone {rate:.0f}, {turns} turn{'s' * (turns > 1)}", n / wall / rate,
                    f"peak RSS {peak:.0f} MiB" + (f", {peak / runs[0][4]:.2f}x the {sizes[0]:,} sentences'"
                                                  if k else "")
                    + ("" if student != tmp else "; untrained heads"))


def decoding_row(path, encs):
    """Constrained (Viterbi) decoding of the drug head's BIO tags, with the spans' confidences, against the
    encoder pass that feeds it."""
    student = model.AdeModel(model.load_encoder(path)).eval()
    inputs = [(b, *padded(encs, b)) for b in data.length_batches([len(e["ids"]) for e in encs], 64)]
    with torch.no_grad():
        log_probs = [(b, model.log_softmax(student.drug_head(student.encoder(ids, mask))))
                     for b, ids, mask in inputs]

    @torch.no_grad()
    def encoder_only():
        for _, ids, mask in inputs:
            student.encoder(ids, mask)

    def decode():  # with each span's confidence (forward-backward), a batch at a time
        for b, lp in log_probs:
            model.decode_batch([encs[i] for i in b], lp)

    t_enc, t_dec = seconds(encoder_only, decode)
    row("8. constrained decoding vs the encoder pass (s)", f"{t_dec:.2f} s decoding",
        f"{t_enc:.2f} s encoder", f"{t_dec / t_enc:.1%}",
        f"{len(encs)} sentences, drug head (the ADE head decodes as many again per drug)")


def lexicon_row(splits):
    """The lexicon teacher's matcher (data.TermList) against the one-regex alternation of its terms."""
    import re
    terms = {r["text"][slice(*p["ade"])].lower() for r in splits["train"] for p in r["pairs"]}
    texts = [r["text"] for r in splits["pool"]]
    alternation = sorted({t for t in terms if len(t) >= 3}, key=lambda t: (-len(t), t))
    regex = re.compile(r"(?<![A-Za-z0-9])(?:" + "|".join(map(re.escape, alternation)) + r")(?![A-Za-z0-9])",
                       re.I)
    term_list = data.TermList(terms)
    same = all([m.span() for m in regex.finditer(x)] == term_list.spans(x) for x in texts)
    t_ours, t_regex = seconds(lambda: [term_list.spans(x) for x in texts],
                              lambda: [list(regex.finditer(x)) for x in texts], repeat=1)
    row("9. lexicon matching, ADE terms over the pool (sentences/s)", f"{len(texts) / t_ours:.0f}",
        f"one regex {len(texts) / t_regex:.0f}", t_regex / t_ours,
        f"{len(alternation)} terms, {len(texts)} sentences; same matches: {same}")


def gpu_rows(path, texts, student_dir):
    """Row 7, where CUDA is present. Prediction in bf16, in process, over 20,000 sentences (the corpus's,
    repeated) with the trained student (--student, else untrained heads): `predict` with confidences, and
    with span_probabilities replaced by ones (what the confidences cost), against the bare encoder over the
    same sentences in batches of 64 (tokenising, decoding and `predict`'s slicing left out). Then one
    training step as `train` takes it (the student's loss, micro-batches of MAX_BATCH_TOKENS, clipping,
    fused AdamW) on random tokens for MiniLM and a BERT-base-sized encoder, in bf16 and in fp16 with a
    GradScaler, at the run's batch (32 x 64 tokens) and at 256 x 128 in one piece, and compiled in bf16 at
    256 x 128: tokens/s and MFU against the GPU's dense bf16/fp16 peak (PEAK_TFLOPS, default 989: H100 and
    H200 SXM); FLOPs 6 N T + 12 L D T^2 a sequence (N: the encoder's parameters but its embeddings).
    With --student, last, sharded_gpu_row."""
    if not torch.cuda.is_available():
        return row("7. GPU prediction and training", "-", "-", "-", "skipped: no CUDA device here")
    import ade_distill
    device, gpu = torch.device("cuda"), torch.cuda.get_device_name()
    if student_dir:
        student, tokenizer, meta = ade_distill.load_trained(student_dir, device)
    else:
        torch.manual_seed(0)
        student = model.AdeModel(model.load_encoder(path)).to(device).eval()
        tokenizer = model.load_tokenizer(path)
        meta = {"task": "ade", "types": ["drug", "ade"], "max_len": 128}
    n = 64 if TINY else 20000
    records = [{"id": str(i), "text": texts[i % len(texts)]} for i in range(n)]
    encs = data.encode(tokenizer, [r["text"] for r in records], meta["max_len"])
    inputs = [tuple(t.to(device) for t in padded(encs, b))
              for b in data.length_batches([len(e["ids"]) for e in encs], 64)]

    @torch.no_grad()
    def encoder_only():
        with model.autocast(device, torch.bfloat16):
            for ids, mask in inputs:
                student.encoder(ids, mask)
        torch.cuda.synchronize()

    exact = model.span_probabilities
    no_confidences = lambda scores, lengths, spans: [[1.0] * len(s) for s in spans]  # noqa: E731
    rates = {}
    try:
        for name, marginals in (("with confidences", exact), ("without confidences", no_confidences)):
            model.span_probabilities = marginals
            rates[name] = n / seconds(lambda: ade_distill.predict(student, tokenizer, records, meta,
                                                                  torch.bfloat16), repeat=1)
    finally:
        model.span_probabilities = exact
    t_enc = seconds(encoder_only)
    for name, rate in rates.items():
        row(f"7. GPU predict, bf16, {name} (sentences/s)", f"{rate:.0f}", f"encoder alone {n / t_enc:.0f}",
            rate * t_enc / n, f"{n:,} sentences, tokenising and decoding included; {gpu}")
    del student
    peak_flops = float(os.environ.get("PEAK_TFLOPS", "989")) * 1e12
    minilm = model.BertConfig.from_json(os.path.join(path, "config.json"))
    base = model.BertConfig(hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                            intermediate_size=3072)
    run_batch, big = ((4, 16), (8, 16)) if TINY else ((32, 64), (256, 128))
    encoders = (("MiniLM-L6", minilm), ("BERT-base", base))
    configs = [(name, config, precision, shape, False) for name, config in encoders
               for precision in ("bf16", "fp16") for shape in (run_batch, big)]
    configs += [(name, config, "bf16", big, True) for name, config in encoders]  # compiled last: slowest
    for name, config, precision, (B, T), compiled in configs:
        torch.manual_seed(0)
        ade = model.AdeModel(model.BertModel(config)).to(device).train()
        opt = torch.optim.AdamW(ade.parameters(), lr=1e-5, fused=True)
        scaler = torch.amp.GradScaler("cuda", enabled=precision == "fp16")
        loss_of = torch.compile(ade.loss) if compiled else ade.loss
        dtype = torch.bfloat16 if precision == "bf16" else torch.float16
        rows_per_part = max(1, ade_distill.MAX_BATCH_TOKENS // T) if (B, T) == run_batch else B
        parts = []
        for start in range(0, B, rows_per_part):
            b = min(rows_per_part, B - start)
            parts.append({"input_ids": torch.randint(1000, 20000, (b, T), device=device),
                          "attention_mask": torch.ones(b, T, dtype=torch.long, device=device),
                          "labels": torch.randint(0, 3, (b, T), device=device),
                          "drug_sentence": torch.arange(b, device=device),
                          "drug_token_mask": (torch.arange(T, device=device) == 1).float().expand(b, T),
                          "ade_labels": torch.randint(0, 3, (b, T), device=device)})

        def step():
            for part in parts:
                with torch.autocast("cuda", dtype=dtype):
                    loss = loss_of(part)
                scaler.scale(loss / (2 * B * T)).backward()
            scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(ade.parameters(), ade_distill.GRAD_CLIP)
            scaler.step(opt)
            scaler.update()
            opt.zero_grad(set_to_none=True)

        for _ in range(2 if TINY else 5):
            step()
        torch.cuda.synchronize()
        t0, steps = time.perf_counter(), 2 if TINY else 30
        for _ in range(steps):
            step()
        torch.cuda.synchronize()
        dt = (time.perf_counter() - t0) / steps
        n_params = sum(p.numel() for k, p in ade.encoder.named_parameters() if "embeddings" not in k)
        flops = B * (6 * n_params * T + 12 * config.num_hidden_layers * config.hidden_size * T * T)
        row(f"7. GPU training step, {name}, {precision}{' + GradScaler' if precision == 'fp16' else ''}, "
            f"{B} x {T}{' in ' + str(len(parts)) + ' micro-batches' if len(parts) > 1 else ''}"
            f"{', compiled' if compiled else ''} (tokens/s)", f"{B * T / dt:.0f}",
            f"peak {peak_flops / 1e12:.0f} TFLOP/s", f"MFU {flops / dt / peak_flops:.1%}",
            f"{1000 * dt:.1f} ms/step; {gpu}")
        del ade, opt, loss_of
        gc.collect()
    if student_dir:
        sharded_gpu_row(student_dir, texts, 64 if TINY else 100000, 2 if TINY else 8)


def sharded_gpu_row(student_dir, texts, n, shards):
    """Row 7: `--predict_file` end to end (start-up included) on one GPU over n sentences, bf16: `shards`
    processes of --shard=K/N at once (2 CPU threads each) against one process, and whether their outputs
    joined are the one process's (spans equal, confidences within 1e-4)."""
    with tempfile.TemporaryDirectory() as tmp:
        infile = os.path.join(tmp, "in.jsonl")
        with open(infile, "w") as f:
            f.writelines(json.dumps({"id": str(i), "text": texts[i % len(texts)]}) + "\n" for i in range(n))

        def started(out, extra=(), threads=None):  # -> (the process, its stderr's file)
            env = {**os.environ, **({"OMP_NUM_THREADS": str(threads)} if threads else {})}
            command = [sys.executable, os.path.join(ROOT, "ade_distill.py"), f"--out_dir={student_dir}",
                       f"--predict_file={infile}", "--amp=bf16", f"--predict_out={out}", *extra]
            log = out + ".log"
            return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=open(log, "w")), log

        walls = []
        for start in (lambda: [started(f"{tmp}/one.jsonl")],
                      lambda: [started(f"{tmp}/part{k}.jsonl", [f"--shard={k}/{shards}"], 2)
                               for k in range(1, shards + 1)]):
            t0 = time.perf_counter()
            for process, log in start():
                if process.wait():
                    sys.exit(f"error: --predict_file exited with status {process.returncode}:\n"
                             f"{open(log).read()[-2000:]}")
            walls.append(time.perf_counter() - t0)
        one = [json.loads(line) for line in open(f"{tmp}/one.jsonl")]
        joined = [json.loads(line) for k in range(1, shards + 1) for line in open(f"{tmp}/part{k}.jsonl")]

        def units(records):  # (spans, confidences) of every record
            found = [r.get("pairs", r.get("entities")) for r in records]
            return [([(u.get("drug"), u.get("ade"), u.get("span")) for u in us],
                     [u["confidence"] for u in us]) for us in found]

        same = len(one) == len(joined) == n and all(
            a[0] == b[0] and all(abs(x - y) <= 1e-4 for x, y in zip(a[1], b[1]))
            for a, b in zip(units(one), units(joined)))
    row(f"7. GPU --predict_file, {n:,} sentences, bf16, {shards} processes of --shard=K/{shards} "
        "(sentences/s)", f"{n / walls[1]:.0f}", f"one process {n / walls[0]:.0f}", walls[0] / walls[1],
        f"start-up included; joined outputs equal to the one process's: {same}; "
        f"{torch.cuda.get_device_name()}")


# Hugging Face's token-classification pipeline over the texts of a JSON Lines file (argv 2), batches of 64,
# from the BertForTokenClassification directory argv[1]; its peak resident memory to argv[3], as PEAK_CHILD
HF_PIPELINE_CHILD = """import json, sys
from transformers import AutoTokenizer, BertForTokenClassification, pipeline
directory, infile, hwm = sys.argv[1:]
texts = [json.loads(line)["text"] for line in open(infile)]
tagger = pipeline("token-classification", model=BertForTokenClassification.from_pretrained(directory),
                  tokenizer=AutoTokenizer.from_pretrained(directory), aggregation_strategy="simple", device="cpu")
found = sum(len(entities) for entities in tagger(texts, batch_size=64))
open(hwm, "w").write(open("/proc/self/status").read().split("VmHWM:")[1].split()[0])
print(found)
"""


def pipeline_row(path, texts, n):
    """Row 11: the NER student (untrained heads: the same weights on both sides) over n sentences, end to end
    (start-up included), by `--predict_file` and by Hugging Face's pipeline("token-classification",
    aggregation_strategy="simple") over the same weights as a BertForTokenClassification; fp32."""
    try:
        from transformers import BertForTokenClassification
    except ImportError:
        return row("11. NER prediction against HF pipeline (sentences/s)", "-", "-", "-",
                   "transformers is not installed")
    types = ["Chemical", "Disease"]
    with tempfile.TemporaryDirectory() as tmp:
        torch.manual_seed(0)
        student = model.NerModel(model.load_encoder(path), len(types))
        model.save_student(student, os.path.join(tmp, "student"), path,
                           {"task": "ner", "types": types, "max_len": 128})
        labels = ["O"] + [f"{bio}-{t}" for t in types for bio in "BI"]  # the order of the head's classes
        hf = BertForTokenClassification.from_pretrained(os.path.join(tmp, "student"), num_labels=len(labels),
                                                        id2label=dict(enumerate(labels)))
        hf.classifier.load_state_dict(student.head.state_dict())
        hf.save_pretrained(os.path.join(tmp, "hf"))
        for name in model.TOKENIZER_FILES:
            if os.path.exists(os.path.join(tmp, "student", name)):
                shutil.copy(os.path.join(tmp, "student", name), os.path.join(tmp, "hf"))
        infile = os.path.join(tmp, "in.jsonl")
        with open(infile, "w") as f:
            f.writelines(json.dumps({"id": str(i), "text": texts[i % len(texts)]}) + "\n" for i in range(n))
        hwm = os.path.join(tmp, "hwm")
        runs = {}
        for name, command in (
                ("ours", [sys.executable, "-c", PEAK_CHILD.format(root=ROOT), hwm, f"--out_dir={tmp}",
                          f"--predict_file={infile}", "--amp=fp32", f"--predict_out={tmp}/out.jsonl"]),
                ("hf", [sys.executable, "-c", HF_PIPELINE_CHILD, os.path.join(tmp, "hf"), infile, hwm])):
            t0 = time.perf_counter()
            done = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            if done.returncode:
                sys.exit(f"error: {name} exited with status {done.returncode}:\n{done.stderr[-2000:]}")
            runs[name] = (n / (time.perf_counter() - t0), int(open(hwm).read()) / 1024)
        row(f"11. NER prediction, {n:,} sentences, fp32 (sentences/s)", f"{runs['ours'][0]:.0f}",
            f"HF pipeline {runs['hf'][0]:.0f}", runs["ours"][0] / runs["hf"][0],
            f"peak RSS {runs['ours'][1]:.0f} MiB against {runs['hf'][1]:.0f} MiB; with confidences")


def main(argv):
    global QUICK, TINY
    options = {"quick": False, "tiny": False, "row": "", "init_from": "", "out_dir": "", "student": ""}
    for arg in argv:
        key, eq, value = arg.removeprefix("--").partition("=")
        if key not in options or eq != (key in ("row", "init_from", "out_dir", "student")) * "=":
            sys.exit(f"error: unknown option {arg}; options: --quick --tiny --row=N[,N...] --init_from=DIR "
                     "--out_dir=DIR --student=DIR")
        options[key] = value if eq else True
    QUICK, TINY = options["quick"], options["tiny"]
    rows = {int(n) for n in options["row"].split(",")} if options["row"] else set(range(1, 12))
    path = options["init_from"] or model.default_encoder()
    splits = data.load_splits(data.data_root())
    tokenizer = model.load_tokenizer(path)
    test = splits["test"][:32 if TINY else None]
    test_encs = data.encode(tokenizer, [r["text"] for r in test], 128)
    batches = data.length_batches([len(e["ids"]) for e in test_encs], 32)
    machine = (f"benchmark on {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
               f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(machine, file=sys.stderr)
    if rows & {1, 2}:
        encoder_rows(path, test_encs, batches)
    if 3 in rows:
        fan_out_rows(path, test, test_encs)
    pool = splits["pool"][: 64 if TINY else 1000 if QUICK else 4000]
    pool_encs = data.encode(tokenizer, [r["text"] for r in pool], 128)
    if 4 in rows:
        bucketing_row(path, pool_encs)
    if 5 in rows:
        teacher_rows()
    if 6 in rows:
        sizes = (16, 64) if TINY else (1000, 10000) if QUICK else (1000, 100000)
        texts = [r["text"] for r in splits["pool"] + splits["test+neg"]]
        prediction_rows(path, texts, sizes, options["student"])
    if 8 in rows:
        test_neg = splits["test+neg"][:32 if TINY else None]
        decoding_row(path, data.encode(tokenizer, [r["text"] for r in test_neg], 128))
    if 9 in rows:
        lexicon_row({**splits, "pool": splits["pool"][:500 if TINY else None]})
    if 7 in rows:
        gpu_rows(path, [r["text"] for r in splits["pool"] + splits["test+neg"]], options["student"])
    if 10 in rows:
        token_budget_row(path, pool_encs)
    if 11 in rows:
        pipeline_row(path, [r["text"] for r in splits["pool"]], 16 if TINY else 1000 if QUICK else 5000)
    table = "\n".join(["| row | ade_distill | reference | ratio | note |", "| --- | ---: | ---: | ---: | --- |",
                       *("| " + " | ".join(r) + " |" for r in ROWS)])
    print("\n" + table)
    if options["out_dir"]:
        os.makedirs(options["out_dir"], exist_ok=True)
        with open(os.path.join(options["out_dir"], "benchmark.md"), "w") as f:
            f.write(f"{machine}\n\n{table}\n")


if __name__ == "__main__":
    main(sys.argv[1:])
