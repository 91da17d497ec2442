"""The teachers, the HTTP client against a real HTTP server on 127.0.0.1, and the reply cache."""
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

import pytest

import data
import teacher
from conftest import ROOT

TEXT = "Intravenous azithromycin-induced ototoxicity."
SENTENCES = [{"id": f"s{i}", "text": f"Patient {i} developed rash after aspirin."} for i in range(40)]


def chat_reply(content, finish_reason="stop", usage=(100, 20)):
    return json.dumps({"choices": [{"message": {"role": "assistant", "content": content},
                                    "finish_reason": finish_reason}],
                       "usage": {"prompt_tokens": usage[0], "completion_tokens": usage[1]}})


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch):
    monkeypatch.setattr(teacher, "MAX_RETRIES", teacher.MAX_RETRIES)  # restored after each test
    monkeypatch.setattr(teacher, "BACKOFF_S", 0.01)


def config(server, tmp_path, **kw):
    return teacher.TeacherConfig(base_url=server.url + "/v1", llm_model="test-model",
                                 cache=str(tmp_path / "cache.jsonl"), **kw)


def answer_pairs(server, pairs=(("aspirin", "rash"),)):
    server.handle = lambda h: server.reply(h, 200, chat_reply(json.dumps(
        {"pairs": [{"drug": d, "adverse_event": a} for d, a in pairs]})))


def test_request_json_and_headers(server, tmp_path, monkeypatch):
    monkeypatch.setenv("MY_KEY", "sk-test-abc")
    answer_pairs(server, [("azithromycin", "ototoxicity")])
    train = [{"id": "t", "text": "Lithium-induced tremor.", "pairs": [{"drug": [0, 7], "ade": [16, 22]}]}]
    labels, stats = teacher.label_llm([{"id": "x", "text": TEXT}], config(server, tmp_path, shots=1,
                                                                         api_key_env="MY_KEY"), train)
    method, path, headers, body = server.requests[0]
    assert (method, path) == ("POST", "/v1/chat/completions")
    assert headers["Authorization"] == "Bearer sk-test-abc" and headers["Content-Type"] == "application/json"
    body = json.loads(body)
    assert body["model"] == "test-model" and body["temperature"] == 0.0 and body["seed"] == 0
    assert body["response_format"] == {"type": "json_object"}
    roles = [m["role"] for m in body["messages"]]
    assert roles == ["system", "user", "assistant", "user"]
    assert json.loads(body["messages"][2]["content"]) == {"pairs": [{"drug": "Lithium", "adverse_event": "tremor"}]}
    assert body["messages"][3]["content"] == f"Sentence: {TEXT}"
    assert labels[0]["pairs"] == [{"drug": [12, 24], "ade": [33, 44]}] and labels[0]["teacher"] == "llm"
    assert stats["prompt_tokens"] == 100 and stats["aligned"] == stats["strings"] == 1


def test_similar_shots_are_each_sentences_nearest_train_sentences(server, tmp_path):
    """TF-IDF cosine over words: the query shares lithium, caused and tremor with t2, rash with t1; warfarin
    and bleeding with t3, bleeding with t4. A train sentence is never its own example, and with no word in
    common every score ties: the lowest ids."""
    answer_pairs(server, [])
    train = [{"id": "t3", "text": "Warfarin caused bleeding in an elderly man.", "pairs": []},
             {"id": "t1", "text": "Aspirin caused rash in a child.", "pairs": []},
             {"id": "t4", "text": "Aspirin caused bleeding.", "pairs": []},
             {"id": "t2", "text": "Lithium caused tremor.", "pairs": []}]
    queries = {"Lithium toxicity caused tremor and rash.": ["t2", "t1"], "Warfarin-induced bleeding.": ["t3", "t4"],
               "Nothing here.": ["t1", "t2"]}
    records = [{"id": f"q{i}", "text": text} for i, text in enumerate([*queries, "Lithium caused tremor."])]
    teacher.label_llm(records, config(server, tmp_path, shots=2, shot_selection="similar"), train)
    text_of = {r["text"]: r["id"] for r in train}
    shots = {}
    for *_, body in server.requests:
        messages = json.loads(body)["messages"]
        shots[messages[-1]["content"].removeprefix("Sentence: ")] = \
            [text_of[m["content"].removeprefix("Sentence: ")] for m in messages[1:-1:2]]
    assert {q: shots[q] for q in queries} == queries and "t2" not in shots["Lithium caused tremor."]
    assert len(shots["Lithium caused tremor."]) == 2


def test_llm_plus_lexicon_keeps_both_and_their_union_and_a_rerun_asks_nothing(server, tmp_path):
    answer_pairs(server, [("aspirin", "rash")])
    train = [{"id": "t", "text": "Lithium caused tremor.", "pairs": [{"drug": [0, 7], "ade": [15, 21]}]}]
    text = "Lithium tremor and aspirin rash."
    cfg = config(server, tmp_path)
    labels, stats = teacher.label([{"id": "x", "text": text}], "llm+lexicon", cfg, train)
    [record] = labels
    assert record["teacher"] == "llm+lexicon" and stats["requests"] == 1
    assert record["teachers"]["llm"]["pairs"] == [{"drug": [19, 26], "ade": [27, 31]}]
    assert record["teachers"]["lexicon"]["pairs"] == [{"drug": [0, 7], "ade": [8, 14]}]
    assert record["pairs"] == [{"drug": [19, 26], "ade": [27, 31]}, {"drug": [0, 7], "ade": [8, 14]}]
    assert teacher.label([{"id": "x", "text": text}], "llm+lexicon", cfg, train)[0] == labels
    assert len(server.requests) == 1


@pytest.mark.parametrize("content,pairs,failed", [
    ('```json\n{"pairs": [{"drug": "aspirin", "adverse_event": "rash"}]}\n```', 1, 0),
    ('Sure! Here is the answer: {"pairs": [{"drug": "aspirin", "adverse_event": "rash"}]} Hope it helps.', 1, 0),
    ('{"pairs": []}', 0, 0),
    ("", 0, 1),
    ("I cannot help with that.", 0, 1),
    ('{"pairs": [{"drug": "aspirin", "adverse_ev', 0, 1),
    ('{"pairs": null}', 0, 1),
    ('{"pairs": "none"}', 0, 1),
    ('[{"drug": "aspirin", "adverse_event": "rash"}]', 0, 1),
    ('{"pairs": [{"drug": 3, "adverse_event": ["rash"]}, "aspirin", null]}', 0, 0),
])
def test_reply_formats(server, tmp_path, content, pairs, failed):
    truncated = content.endswith("adverse_ev")
    server.handle = lambda h: server.reply(h, 200, chat_reply(content, "length" if truncated else "stop"))
    labels, stats = teacher.label_llm(SENTENCES[:1], config(server, tmp_path), [])
    assert stats["failed_replies"] == failed and ("error" in labels[0]) == failed  # no answer is not "no ADE"
    assert len(labels[0].get("pairs", [])) == pairs and ("pairs" in labels[0]) != failed
    assert stats["truncated"] == truncated and labels[0]["raw"]["content"] == content


def test_strings_are_aligned_to_the_closest_pair_and_misses_counted(server, tmp_path):
    text = "Aspirin gave rash; later aspirin gave rash again, and fever."
    answer_pairs(server, [("aspirin", "fever"), ("ibuprofen", "rash")])
    labels, stats = teacher.label_llm([{"id": "x", "text": text}], config(server, tmp_path), [])
    assert labels[0]["pairs"] == [{"drug": [25, 32], "ade": [54, 59]}]  # the second aspirin is closer
    assert (stats["strings"], stats["aligned"]) == (2, 1)
    assert teacher.align("ototoxicity", "toxicity", "oto") == ([3, 11], [0, 3])  # plain occurrence fallback
    # a whole word first, though the same letters inside a word sit closer to the drug
    assert teacher.align("Doxorubicin cardiotoxicity was seen; toxicity resolved.", "doxorubicin",
                         "toxicity") == ([0, 11], [37, 45])


def test_429_with_retry_after_is_honoured(server, tmp_path):
    times = []

    def handle(h):
        times.append(time.time())
        if len(times) == 1:
            server.reply(h, 429, '{"error": {"message": "slow down"}}', {"Retry-After": "1"})
        else:
            server.reply(h, 200, chat_reply('{"pairs": []}'))
    server.handle = handle
    teacher.label_llm(SENTENCES[:1], config(server, tmp_path), [])
    assert len(times) == 2 and times[1] - times[0] >= 0.95


def test_retry_after_is_capped(server, tmp_path, monkeypatch):
    times = []

    def handle(h):
        times.append(time.time())
        server.reply(h, 429, "busy", {"Retry-After": "3600"}) if len(times) == 1 else \
            server.reply(h, 200, chat_reply('{"pairs": []}'))
    server.handle = handle
    monkeypatch.setattr(teacher, "MAX_WAIT_S", 0.3)  # the cap: 60 s
    teacher.label_llm(SENTENCES[:1], config(server, tmp_path), [])
    assert len(times) == 2 and 0.29 <= times[1] - times[0] < 10


# the statuses the README says are retried, which must be RETRY_STATUS (429: the tests above)
README_RETRIED = {int(s) for s in re.search(r"(\d{3}(?:, \d{3})*) and\s+timeouts are retried",
                                            open(os.path.join(ROOT, "README.md")).read()).group(1).split(", ")}


def test_the_readme_lists_the_retried_statuses():
    assert README_RETRIED == teacher.RETRY_STATUS


@pytest.mark.parametrize("status", sorted(README_RETRIED - {429}))
def test_5xx_twice_then_success(server, tmp_path, status):
    count = []

    def handle(h):
        count.append(1)
        if len(count) <= 2:
            server.reply(h, status, "oops")
        else:
            server.reply(h, 200, chat_reply('{"pairs": []}'))
    server.handle = handle
    labels, _ = teacher.label_llm(SENTENCES[:1], config(server, tmp_path), [])
    assert len(count) == 3 and labels[0]["pairs"] == []


@pytest.mark.parametrize("status,body,advice", [
    (401, '{"error": {"message": "Incorrect API key"}}', "check the API key"),
    (403, '{"error": {"message": "not allowed"}}', "that it may use this model"),
    (404, "no such route", "check --base_url"),
    (400, '{"error": {"message": "maximum context length exceeded"}}', "if the prompt is too long, fewer --shots"),
    (413, "request entity too large", "check the server log"),
])
def test_errors_that_a_retry_cannot_fix_stop_at_once(server, tmp_path, status, body, advice):
    server.handle = lambda h: server.reply(h, status, body)
    with pytest.raises(teacher.TeacherError) as error:
        teacher.label_llm(SENTENCES[:1], config(server, tmp_path, concurrency=1), [])
    assert len(server.requests) == 1
    msg = str(error.value)
    assert f"{server.url}/v1/chat/completions" in msg and str(status) in msg and advice in msg


def test_json_mode_and_a_server_that_refuses_it(server, tmp_path):
    answer_pairs(server)
    teacher.label_llm(SENTENCES[:1], config(server, tmp_path), [])
    teacher.label_llm(SENTENCES[1:2], config(server, tmp_path, json_mode=False), [])
    assert [json.loads(body).get("response_format") for *_, body in server.requests] == [{"type": "json_object"}, None]
    server.handle = lambda h: server.reply(h, 400, '{"detail": "response_format: Input should be \'text\'"}')
    with pytest.raises(teacher.TeacherError, match="names response_format, the server does not take it: pass --json_mode=false"):
        teacher.label_llm(SENTENCES[2:3], config(server, tmp_path), [])


def test_dry_run_sends_nothing_and_estimates_the_cost(server, tmp_path, capsys):
    answer_pairs(server)
    teacher.label_llm(SENTENCES[:2], config(server, tmp_path), [])  # two cached
    cfg = config(server, tmp_path, dry_run=True, price_in=2.0, price_out=8.0)
    train = [{"id": "t", "text": "Lithium-induced tremor.", "pairs": [{"drug": [0, 7], "ade": [16, 22]}]}]
    labels, stats = teacher.label_llm(SENTENCES[:10], cfg, train)
    assert labels is None and stats["requests"] == 8 and len(server.requests) == 2
    # each request's messages are 580 characters of JSON (the instruction, 465, and "Sentence: Patient 2
    # developed rash after aspirin."): 145 tokens at 4 characters a token, 1,160 for 8; each reply is
    # expected as long as the train split's answer, {"pairs": [{"drug": "Lithium", ...}]}: 59 characters,
    # 14.75 tokens, 118 for 8. At 2 and 8 USD per million: 1,160 * 2 + 118 * 8 = 3,264 millionths of a USD.
    err = capsys.readouterr().err
    assert "8 requests to send, 2 cached; about 1,160 prompt and 118 completion tokens; about 0.00 USD" in err
    teacher.label_llm(SENTENCES[:10], config(server, tmp_path, dry_run=True, price_in=2000.0, price_out=8000.0),
                      train)
    assert "about 3.26 USD" in capsys.readouterr().err


def test_max_cost_stops_before_the_cap_and_a_rerun_goes_on(server, tmp_path):
    server.handle = lambda h: server.reply(h, 200, chat_reply('{"pairs": []}', usage=(100, 20)))
    # completion tokens cost 1 USD each: a request's worst case is 100 USD (max_tokens), its real cost 20
    cfg = config(server, tmp_path, concurrency=1, max_tokens=100, price_out=1e6, max_cost=250)
    with pytest.raises(teacher.BudgetReached, match="spent about 160.0000 USD"):
        teacher.label_llm(SENTENCES[:20], cfg, [])
    assert len(server.requests) == 8  # the 9th could have brought the spend to 160 + 100 > 250
    assert len(open(tmp_path / "cache.jsonl").readlines()) == 8
    labels, stats = teacher.label_llm(SENTENCES[:20], config(server, tmp_path, max_tokens=100), [])  # no cap
    assert len(server.requests) == 20 and stats["requests"] == 12 and len(labels) == 20


def test_slow_server_times_out_and_is_retried(server, tmp_path):
    def handle(h):
        if len(server.requests) == 1:
            time.sleep(1.0)
        server.reply(h, 200, chat_reply('{"pairs": []}'))
    server.handle = handle
    teacher.label_llm(SENTENCES[:1], config(server, tmp_path, timeout=0.3), [])
    assert len(server.requests) == 2


def test_unreachable_server_is_a_clear_error(tmp_path):
    teacher.MAX_RETRIES = 1
    cfg = teacher.TeacherConfig(base_url="http://127.0.0.1:9/v1", llm_model="m", cache=str(tmp_path / "c.jsonl"))
    with pytest.raises(teacher.TeacherError, match="failed 2 times; last: ConnectionError.*Is the server up"):
        teacher.label_llm(SENTENCES[:1], cfg, [])


def test_concurrency_overlaps_requests_and_is_bounded(server, tmp_path):
    state = {"now": 0, "max": 0}
    lock = threading.Lock()

    def handle(h):
        with lock:
            state["now"] += 1
            state["max"] = max(state["max"], state["now"])
        time.sleep(0.2)
        with lock:
            state["now"] -= 1
        server.reply(h, 200, chat_reply('{"pairs": []}'))
    server.handle = handle
    teacher.label_llm(SENTENCES[:16], config(server, tmp_path, concurrency=4), [])
    assert state["max"] == 4  # measured by the server: requests did overlap, never more than 4


def test_cache_means_no_request_twice_and_key_follows_prompt_model_and_parameters(server, tmp_path):
    answer_pairs(server)
    cfg = config(server, tmp_path)
    first, _ = teacher.label_llm(SENTENCES[:5], cfg, [])
    assert len(server.requests) == 5
    again, stats = teacher.label_llm(SENTENCES[:5], cfg, [])
    assert len(server.requests) == 5 and stats["requests"] == 0 and again == first
    cfg.llm_model = "another-model"
    teacher.label_llm(SENTENCES[:5], cfg, [])
    assert len(server.requests) == 10
    train = [{"id": "t", "text": "Aspirin rash.", "pairs": []}]
    cfg.shots = 1  # a different prompt
    teacher.label_llm(SENTENCES[:5], cfg, train)
    assert len(server.requests) == 15
    cfg.max_tokens = 64  # a different parameter
    teacher.label_llm(SENTENCES[:5], cfg, train)
    assert len(server.requests) == 20


HOLDER = """
import sys, time
sys.path.insert(0, {root!r})
import teacher
cache = teacher.ReplyCache({path!r})
cache.file.write(b'{{"key": "k4", "reply": {{"choi')  # a reply half-written when the kill comes
cache.file.flush()
print("holding", flush=True)
time.sleep(60)
"""


def test_a_second_run_on_a_cache_neither_cuts_the_first_ones_line_nor_writes(server, tmp_path):
    answer_pairs(server)
    cfg = config(server, tmp_path)
    teacher.label_llm(SENTENCES[:3], cfg, [])
    cache = tmp_path / "cache.jsonl"
    first = subprocess.Popen([sys.executable, "-c", HOLDER.format(root=ROOT, path=str(cache))],
                             stdout=subprocess.PIPE, text=True)
    assert first.stdout.readline() == "holding\n"
    before = cache.read_bytes()
    with pytest.raises(data.InputError, match="in use by another run; wait for that labeling run.*--cache=FILE"):
        teacher.label_llm(SENTENCES[:4], cfg, [])
    assert cache.read_bytes() == before and before.endswith(b'"reply": {"choi')
    first.send_signal(signal.SIGKILL)  # mid-write
    first.wait()
    teacher.label_llm(SENTENCES[:4], cfg, [])
    assert len(server.requests) == 4  # the three cached, then only the fourth
    assert [json.loads(line)["key"] for line in cache.read_text().splitlines()][:3] == \
        [json.loads(line)["key"] for line in before.decode().splitlines()[:3]]
    assert len(cache.read_text().splitlines()) == 4


def run_cli(args, env):
    """teacher.py as a user's terminal runs it: Ctrl-C (SIGINT) at its default even where this process ignores
    it, as a shell does for a command it starts in the background (which would make Python ignore it too)."""
    return subprocess.Popen([sys.executable, os.path.join(ROOT, "teacher.py"), *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT])
def test_kill_midway_then_rerun_labels_everything_once(server, tmp_path, data_dir, sig):
    """SIGKILL the labeler mid-run, or Ctrl-C (SIGINT) it; the rerun asks only for what is not cached, and
    loses nothing."""
    sentences = tmp_path / "in.jsonl"
    sentences.write_text("".join(json.dumps(s) + "\n" for s in SENTENCES))

    def handle(h):
        time.sleep(0.05)
        server.reply(h, 200, chat_reply('{"pairs": [{"drug": "aspirin", "adverse_event": "rash"}]}'))
    server.handle = handle
    env = {**os.environ, "OPENAI_API_KEY": "sk-SECRET-never-on-disk"}
    args = [f"--in={sentences}", f"--out={tmp_path / 'out.jsonl'}", "--teacher=llm", f"--base_url={server.url}/v1",
            "--llm_model=m", "--concurrency=4", f"--cache={tmp_path / 'cache.jsonl'}", f"--data_dir={data_dir}"]
    proc = run_cli(args, env)
    deadline = time.time() + 60
    while len(server.requests) < 12 and time.time() < deadline:
        time.sleep(0.01)
    proc.send_signal(sig)
    err = proc.communicate()[1]
    first_run = len(server.requests)
    assert 12 <= first_run < 40 and not (tmp_path / "out.jsonl").exists()
    cached = {json.loads(line)["key"] for line in open(tmp_path / "cache.jsonl") if line.endswith("\n")}
    if sig == signal.SIGKILL:
        assert len(cached) >= first_run - 4  # at most the requests in flight are lost
    else:  # Ctrl-C: no new request starts, those in flight land in the cache, and the run says so
        assert len(cached) == first_run and "interrupted: the replies received so far are cached" in err

    proc = run_cli(args, env)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    asked_again = {json.loads(body)["messages"][-1]["content"] for _, _, _, body in server.requests[first_run:]}
    answered_before = {json.loads(body)["messages"][-1]["content"] for _, _, _, body in server.requests[:first_run]}
    assert len(server.requests) - first_run == 40 - len(cached), "only the missing sentences are asked"
    assert len(asked_again) == 40 - len(cached) and len(asked_again | answered_before) == 40
    labels = [json.loads(line) for line in open(tmp_path / "out.jsonl")]
    assert [r["id"] for r in labels] == [s["id"] for s in SENTENCES]
    assert all(r["pairs"] == [{"drug": [r["text"].index("aspirin"), r["text"].index("aspirin") + 7],
                               "ade": [r["text"].index("rash"), r["text"].index("rash") + 4]}] for r in labels)
    for root, _, files in os.walk(tmp_path):  # the API key is in no file the run wrote
        for name in files:
            assert b"sk-SECRET" not in open(os.path.join(root, name), "rb").read(), name
    assert "sk-SECRET" not in err


def test_lexicon_teacher_whole_words_longest_match():
    train = [{"text": "Aspirin caused rash.", "pairs": [{"drug": [0, 7], "ade": [15, 19]}]},
             {"text": "It caused a skin rash.", "pairs": [{"drug": [0, 2], "ade": [12, 21]}]}]
    labels, _ = teacher.label_lexicon([{"id": "x", "text": "ASPIRIN skin rash; no rashes; aspirinate."}], train)
    # "it" is under 3 characters (left out); "skin rash" beats "rash"; "rashes", "aspirinate" are other words
    assert labels[0]["pairs"] == [{"drug": [0, 7], "ade": [8, 17]}]
    # a longer term cut by the end of the text is no match; the shorter one that fits is (the regex's answer)
    terms = data.TermList(["skin rash", "skin rashes", "ras"])
    assert terms.spans("a skin rash") == [(2, 11)] and terms.spans("ras") == [(0, 3)]


def test_the_pipelines_lexicon_keeps_terms_annotated_a_tenth_of_the_time(monkeypatch):
    train = [{"text": "Aspirin caused rash and fever.",
              "pairs": [{"drug": [0, 7], "ade": [15, 19]}, {"drug": [0, 7], "ade": [24, 29]}]}]
    sentence = [{"id": "x", "text": "Aspirin: rash, fever."}]
    for n_free, kept in ((9, {"rash", "fever"}), (10, {"rash"})):  # fever annotated 1 time in 10, in 11
        negatives = [{"text": f"Fever was seen on day {d}.", "pairs": []} for d in range(n_free)]
        labels, _ = teacher.label(sentence, "lexicon", teacher.TeacherConfig(), train, train + negatives)
        assert {sentence[0]["text"][slice(*p["ade"])] for p in labels[0]["pairs"]} == kept


def test_labeling_needs_no_torch(tmp_path, data_dir):
    (tmp_path / "in.jsonl").write_text(json.dumps({"id": "1", "text": "Aspirin-induced asthma."}) + "\n")
    code = (f"import sys; sys.modules['torch'] = None; sys.path.insert(0, {ROOT!r}); import teacher; "
            f"teacher.main(['--in={tmp_path / 'in.jsonl'}', '--out={tmp_path / 'out.jsonl'}', '--data_dir={data_dir}'])")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "out.jsonl").read_text())["pairs"] == [{"drug": [0, 7], "ade": [16, 22]}]


def test_lexicon_drops_terms_that_are_rarely_annotated():
    train = [{"text": "Aspirin caused rash and fever.",
              "pairs": [{"drug": [0, 7], "ade": [15, 19]}, {"drug": [0, 7], "ade": [24, 29]}]}]
    # "fever" occurs 4 more times in ADE-free sentences: annotated 1 time in 5 (precision 0.2);
    # "rash" and "aspirin" once in 1 (1.0)
    negatives = [{"text": f"Fever was seen on day {d}.", "pairs": []} for d in range(4)]
    sentence = [{"id": "x", "text": "Aspirin: rash, fever."}]
    kept = lambda p: {sentence[0]["text"][slice(*pair["ade"])]  # noqa: E731
                      for pair in teacher.label_lexicon(sentence, train, None, train + negatives, p)[0][0]["pairs"]}
    assert kept(0.0) == kept(0.2) == {"rash", "fever"}
    assert kept(0.21) == {"rash"}


def test_ner_prompt_and_reply(server, tmp_path):
    text = "Cisplatin nephrotoxicity and cisplatin ototoxicity."
    server.handle = lambda h: server.reply(h, 200, chat_reply(json.dumps(
        {"entities": {"Chemical": ["cisplatin"], "Disease": ["nephrotoxicity", "deafness"]}})))
    labels, stats = teacher.label_llm([{"id": "x", "text": text}], config(server, tmp_path), [],
                                      types=["Chemical", "Disease"])
    system = json.loads(server.requests[0][3])["messages"][0]["content"]
    assert "Chemical (drugs and chemicals)" in system and '"Disease": ["..."]' in system
    assert labels[0]["entities"] == [{"span": [0, 9], "type": "Chemical"}, {"span": [29, 38], "type": "Chemical"},
                                     {"span": [10, 24], "type": "Disease"}]
    assert (stats["strings"], stats["aligned"]) == (3, 2)


def test_progress_in_a_log_file_is_plain_lines(capsys):
    data._last_progress[0] = 0.0
    for done in range(1, 101):
        data.progress("labeling", done, 100, time.time() - 1, end=done == 100)
    err = capsys.readouterr().err  # not a terminal: no carriage returns, one line now and one at the end
    assert "\r" not in err and err.count("\n") == 2 and err.splitlines()[-1].startswith("labeling 100/100")
