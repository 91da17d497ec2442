"""Teachers: they label unlabeled sentences for the student (Gu et al. 2023, section 3.1; Vedula et al.
2024, section 3).

- `llm`: any OpenAI-compatible /v1/chat/completions server (OpenAI, vLLM, llama.cpp, Ollama, LM Studio)
  over plain HTTP. Replies are cached in an append-only JSONL file, written and flushed as each one
  arrives: a crash or Ctrl-C loses at most the requests in flight, and a rerun sends only the rest.
  It answers with strings; `align` makes them spans (the closest pair of occurrences; a miss is counted).
- `lexicon`: offline distant supervision. Term lists of the train split's annotated mention strings;
  a pair for every drug term and adverse-event term found in the same sentence.
- `gold`: the train split's own annotations (the supervised baseline, through the same pipeline).
- `llm+lexicon`: both, the union of their pairs (or entities); each one's own labels kept beside it.

    python teacher.py --in=SENTENCES.jsonl --out=LABELS.jsonl                      # lexicon teacher
    OPENAI_API_KEY=... python teacher.py --in=S.jsonl --out=L.jsonl --teacher=llm \\
        --base_url=https://api.openai.com/v1 --llm_model=gpt-4o-mini --shots=5

Imports data.py (corpora and helpers) and never torch: a labeling machine needs no GPU stack.
"""
import hashlib
import itertools
import json
import math
import os
import random
import re
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, fields

import numpy as np
import requests

import data

# ----------------------------------------------------------------------------- the prompts

ADE_PROMPT = """\
You extract adverse drug events from one sentence of a biomedical abstract.
An adverse drug event is a pair: a drug, and an adverse event (a harmful or unwanted effect) that the \
sentence says the drug caused.
Copy each drug and each adverse event exactly as it is written in the sentence.
Answer with JSON only, in this form: {"pairs": [{"drug": "...", "adverse_event": "..."}]}
If the sentence reports no adverse drug event, answer {"pairs": []}."""

NER_PROMPT = """\
You extract named entities from one sentence of a biomedical abstract.
Entity types: {types}.
Copy each mention exactly as it is written in the sentence, once per occurrence.
Answer with JSON only, in this form: {{"entities": {{{example}}}}}
Use an empty list for a type that the sentence does not mention."""

NER_TYPE_NAMES = {"Chemical": "Chemical (drugs and chemicals)", "Disease": "Disease (diseases and symptoms)"}


def answer_for(record, types=None):
    """The JSON answer we would want for a gold record: the k-shot examples' assistant turns."""
    text = record["text"]
    if types is None:
        return {"pairs": [{"drug": text[slice(*p["drug"])], "adverse_event": text[slice(*p["ade"])]}
                          for p in record["pairs"]]}
    return {"entities": {t: [text[slice(*e["span"])] for e in record["entities"] if e["type"] == t]
                         for t in types}}


def messages_for(text, shots, types=None):
    """Chat messages for one sentence: the instruction, k examples as prior turns, the sentence."""
    system = ADE_PROMPT if types is None else NER_PROMPT.format(
        types=", ".join(NER_TYPE_NAMES.get(t, t) for t in types),
        example=", ".join(f'"{t}": ["..."]' for t in types))
    messages = [{"role": "system", "content": system}]
    for shot in shots:
        messages += [{"role": "user", "content": f"Sentence: {shot['text']}"},
                     {"role": "assistant", "content": json.dumps(answer_for(shot, types))}]
    return messages + [{"role": "user", "content": f"Sentence: {text}"}]


def nearest(texts, train, k):
    """Per text, the k train records nearest to it by TF-IDF cosine over lowercased words, nearest first;
    ties go to the lower sentence id, and a text is never its own example (the pool holds the train split)."""
    train = sorted(train, key=lambda r: r["id"])
    words = [Counter(re.findall(r"\w+", r["text"].lower())) for r in train]
    document_frequency = Counter(w for counts in words for w in counts)
    idf = {w: math.log((1 + len(train)) / (1 + n)) + 1 for w, n in document_frequency.items()}
    postings = {}  # word -> (train rows holding it, its weight there in the row's unit-length vector)
    rows_of = {}  # text -> the train rows that hold it
    for row, counts in enumerate(words):
        rows_of.setdefault(train[row]["text"], []).append(row)
        norm = math.sqrt(sum((n * idf[w]) ** 2 for w, n in counts.items())) or 1.0
        for w, n in counts.items():
            postings.setdefault(w, []).append((row, n * idf[w] / norm))
    postings = {w: tuple(map(np.array, zip(*entries))) for w, entries in postings.items()}
    chosen = []
    for text in texts:  # the text's own norm scales every score alike: the order needs none
        scores = np.zeros(len(train))
        for w, n in Counter(re.findall(r"\w+", text.lower())).items():
            if w in postings:
                scores[postings[w][0]] += n * idf[w] * postings[w][1]
        scores[rows_of.get(text, [])] = -np.inf
        chosen.append([train[row] for row in np.argsort(-scores, kind="stable")[:k]])
    return chosen


# ----------------------------------------------------------------------------- replies -> spans

def align(text, drug, event):
    """Strings -> the closest pair of their occurrences as ([s, e], [s, e]), or None if one is absent.
    Occurrences are data.find_mentions': whole words, else inside words where there is none."""
    gap = lambda d, a: max(d[0] - a[1], a[0] - d[1], 0)  # noqa: E731  (0 when they overlap)
    pairs = itertools.product(data.find_mentions(text, drug), data.find_mentions(text, event))
    d, a = min(pairs, key=lambda da: (gap(*da), da), default=(None, None))
    return (list(d), list(a)) if d else None


def spans_from_reply(content, text, types=None):
    """A reply's text -> (record fields, strings given, strings aligned); fields None when it holds no JSON
    answer of the form asked ({"pairs": [...]}, or {"entities": {...}} for NER), bare, in fences or prose."""
    content = re.sub(r"```(?:json)?", "", content)
    try:  # from the first "{" to the last "}"; without both, the slice is empty: no JSON either
        obj = json.loads(content[content.find("{"):content.rfind("}") + 1])
    except json.JSONDecodeError:
        obj = None
    key, kind = ("pairs", list) if types is None else ("entities", dict)
    if not isinstance(obj, dict) or not isinstance(obj.get(key), kind):
        return None, 0, 0
    if types is None:
        strings = [(p["drug"], p["adverse_event"]) for p in obj["pairs"] if isinstance(p, dict)
                   and isinstance(p.get("drug"), str) and isinstance(p.get("adverse_event"), str)]
        found = [pair for drug, event in strings if (pair := align(text, drug, event))]
        items = [{"drug": d, "ade": a} for d, a in found]
    else:
        strings = [(t, m) for t in types if isinstance(obj["entities"].get(t), list)
                   for m in dict.fromkeys(m for m in obj["entities"][t] if isinstance(m, str))]
        found = [(t, spans) for t, m in strings if (spans := data.find_mentions(text, m))]
        items = [{"span": list(s), "type": t} for t, spans in found for s in spans]
    unique = [item for i, item in enumerate(items) if item not in items[:i]]  # two strings, the same spans
    return {key: unique}, len(strings), len(found)


# ----------------------------------------------------------------------------- the options

@dataclass
class TeacherConfig:
    """The teacher's options (teacher.py's command line); ade_distill.Config adds the student's."""
    teacher: str = "lexicon"
    task: str = "ade"
    dataset: str = "ade"  # --task=ner: bc5cdr | ncbi_disease
    data_dir: str = ""  # default: $ADE_DISTILL_DATA, else ./data
    # the LLM teacher
    base_url: str = "http://localhost:8000/v1"
    llm_model: str = ""
    api_key_env: str = "OPENAI_API_KEY"  # the key is read from this variable, never written anywhere
    shots: int = 0  # k examples of the train split as prior turns of the chat
    shot_selection: str = "random"  # random: the same k for every sentence (seed 0) | similar: its k nearest
    json_mode: bool = True  # ask for response_format json_object (false: for servers that refuse it)
    max_tokens: int = 512
    timeout: float = 60.0  # seconds to wait for one reply (a local model on a CPU may need more)
    concurrency: int = 8
    cache: str = "cache/llm_replies.jsonl"
    dry_run: bool = False  # send nothing: print the requests to send, the estimated tokens and cost
    price_in: float = 0.0  # USD per million prompt tokens, for the cost estimate and --max_cost
    price_out: float = 0.0  # USD per million completion tokens
    max_cost: float = 0.0  # USD: stop before this run's spend could pass it (0 = no cap)

    # what `parse` checks as each option is parsed (class attributes, not options)
    CHOICES = {"teacher": ("lexicon", "gold", "llm", "llm+lexicon"), "task": ("ade", "ner"),
               "dataset": ("ade", *data.NER_DATASETS), "shot_selection": ("random", "similar")}
    MINIMUM = {"max_tokens": 1, "concurrency": 1, "shots": 0}

    @classmethod
    def parse(cls, argv):
        """The command line's `--key=value` arguments (a bare `--key` sets a true/false option) -> a config.
        An unknown key, a wrong type, a value outside CHOICES or below its MINIMUM: a one-line error."""
        config, names = cls(), {f.name: f.type for f in fields(cls)}
        for arg in argv:
            key, eq, value = arg.removeprefix("--").partition("=")
            if not arg.startswith("--") or (not eq and names.get(key, bool) is not bool):
                raise SystemExit(f"error: {arg!r} is not --key=value")
            if key not in names:
                raise SystemExit(f"error: unknown option --{key}; valid options: "
                                 f"{', '.join('--' + n for n in names)}")
            kind, value = names[key], value if eq else "true"
            try:
                if kind is bool and value.lower() not in ("true", "false", "1", "0"):
                    raise ValueError("expected true or false")
                setattr(config, key, value.lower() in ("true", "1") if kind is bool else kind(value))
            except ValueError as e:
                raise SystemExit(f"error: --{key}={value}: {e} (expected {kind.__name__})") from None
            if value not in cls.CHOICES.get(key, (value,)):
                raise SystemExit(f"error: --{key}={value}: choose one of {', '.join(cls.CHOICES[key])}")
            if key in cls.MINIMUM and getattr(config, key) < cls.MINIMUM[key]:
                raise SystemExit(f"error: --{key}={value}: must be at least {cls.MINIMUM[key]}")
        return config


def check_config(cfg):
    """The checks that involve several teacher options, before any data is read or any request sent."""
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", cfg.api_key_env) or cfg.api_key_env.startswith("sk"):
        raise SystemExit("error: --api_key_env takes the NAME of the variable that holds the key (e.g. "
                         "OPENAI_API_KEY), never the key itself")
    if cfg.max_cost and not (cfg.price_in or cfg.price_out):
        raise SystemExit("error: --max_cost needs the prices: --price_in and --price_out (USD per million "
                         "tokens)")
    if cfg.shot_selection == "similar" and not cfg.shots:
        raise SystemExit("error: --shot_selection=similar chooses the --shots=K examples: pass K > 0")
    if cfg.dry_run and "llm" not in cfg.teacher:
        raise SystemExit(f"error: --dry_run=true is for --teacher=llm (the {cfg.teacher} teacher sends "
                         "nothing)")
    if (cfg.task == "ner") == (cfg.dataset == "ade"):
        raise SystemExit(f"error: --task={cfg.task} --dataset={cfg.dataset}: the ADE task reads "
                         f"--dataset=ade, --task=ner one of {', '.join(data.NER_DATASETS)}")


# Plumbing no run needs to change (the tests set some of them lower).
LEXICON_MIN_PRECISION = 0.1  # the lexicon keeps terms at least this precise on train + ADE-free sentences
MAX_RETRIES = 6
BACKOFF_S = 1.0  # seconds before the first retry; doubles each time, with jitter
MAX_WAIT_S = 60.0  # the longest wait before a retry, a server's Retry-After included
RETRY_STATUS = {429, 500, 502, 503, 504}
ADVICE = {400: "if it names response_format, the server does not take it: pass --json_mode=false; "
               "if the prompt is too long, fewer --shots",
          401: "check the API key in the variable named by --api_key_env",
          403: "check the API key and that it may use this model",
          404: "check --base_url (it usually ends in /v1) and --llm_model"}


# ----------------------------------------------------------------------------- the HTTP client

class TeacherError(RuntimeError):
    pass


class BudgetReached(TeacherError):
    pass


def call(session, method, url, cfg, **kwargs):
    """One API call -> its JSON; retries RETRY_STATUS, connection errors and timeouts (backoff with jitter,
    or Retry-After up to MAX_WAIT_S); any other failure is a TeacherError that says what to check."""
    key = os.environ.get(cfg.api_key_env, "")
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    for attempt in range(MAX_RETRIES + 1):
        try:
            r = session.request(method, url, headers=headers, timeout=cfg.timeout, **kwargs)
        except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as e:
            problem, retry_after = f"{type(e).__name__}: {e}", None
        else:
            if r.status_code == 200:
                try:
                    return r.json()
                except ValueError:
                    raise TeacherError(f"{method} {url} answered 200 with a body that is not JSON: "
                                       f"{r.text[:200]!r}. Is --base_url the OpenAI-compatible endpoint "
                                       "(often .../v1)?") from None
            problem = f"HTTP {r.status_code}: {r.text[:300]}"
            if r.status_code not in RETRY_STATUS:
                raise TeacherError(f"{method} {url} answered {problem}. "
                                   f"{ADVICE.get(r.status_code, 'check the server log')}.")
            retry_after = r.headers.get("Retry-After")
        if attempt == MAX_RETRIES:
            raise TeacherError(f"{method} {url} failed {attempt + 1} times; last: {problem}. Is the server "
                               "up and reachable? Rerun to continue: the replies received so far are cached.")
        try:
            delay = float(retry_after)
        except (TypeError, ValueError):
            delay = BACKOFF_S * 2 ** attempt * random.uniform(0.5, 1.0)
        time.sleep(min(delay, MAX_WAIT_S))


class ReplyCache:
    """Append-only JSONL of {"key", "reply"}, held by one run at a time (data.open_appendable); every reply
    is flushed the moment it arrives."""

    def __init__(self, path):
        self.replies, self.lock = {}, threading.Lock()
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self.file = data.open_appendable(path, "wait for that labeling run to finish, or give this run its "
                                               "own --cache=FILE")  # handed back at its start
        for n, line in enumerate(self.file, 1):
            try:
                entry = json.loads(line)
                self.replies[entry["key"]] = entry["reply"]
            except (json.JSONDecodeError, KeyError, TypeError):
                self.file.close()
                raise TeacherError(f"{path}:{n}: not a cache entry; delete that line (the sentence will be "
                                   "asked again) or the file") from None

    def put(self, key, reply):
        with self.lock:
            self.file.write((json.dumps({"key": key, "reply": reply}) + "\n").encode())
            self.file.flush()
            self.replies[key] = reply


def cost_usd(cfg, usage):
    """The price of `usage` ({"prompt_tokens", "completion_tokens"}) at --price_in / --price_out."""
    return (usage.get("prompt_tokens", 0) * cfg.price_in
            + usage.get("completion_tokens", 0) * cfg.price_out) / 1e6


def estimate_usage(bodies, completion_tokens):
    """Requests -> the usage they would report: prompts at 4 characters a token, `completion_tokens` each."""
    return {"prompt_tokens": sum(len(json.dumps(b["messages"])) for b in bodies) / 4,
            "completion_tokens": len(bodies) * completion_tokens}


def ask_live(todo, cfg, cache, url):
    """Send the requests to `url`, cfg.concurrency at a time; every reply goes to the cache as it arrives.
    Each request reserves its worst case until its usage is known; none starts that could pass --max_cost."""
    session, lock = requests.Session(), threading.Lock()
    session.mount(url, requests.adapters.HTTPAdapter(pool_maxsize=cfg.concurrency))  # a connection per worker
    spent = reserved = 0.0  # USD, this run

    def ask(key, body):  # the worker writes its own reply: one in flight at Ctrl-C still lands in the cache
        nonlocal spent, reserved
        worst = cost_usd(cfg, estimate_usage([body], cfg.max_tokens))
        with lock:
            if cfg.max_cost and spent + reserved + worst > cfg.max_cost:
                raise BudgetReached(f"stopped before the spend could pass --max_cost={cfg.max_cost:g} USD "
                                    f"(spent about {spent:.4f} USD this run); every reply received is "
                                    "cached: rerun with a higher --max_cost to go on, nothing is asked twice")
            reserved += worst
        reply = call(session, "POST", url, cfg, json=body)
        cache.put(key, reply)
        with lock:
            reserved -= worst
            spent += cost_usd(cfg, reply.get("usage") or {})

    t0, pool = time.time(), ThreadPoolExecutor(max_workers=cfg.concurrency)
    try:
        futures = [pool.submit(ask, key, body) for key, body in todo.items()]
        for done, future in enumerate(as_completed(futures), 1):
            future.result()  # re-raises a TeacherError of that request
            data.progress("  labeling", done, len(todo), t0, end=done == len(todo))
    except BudgetReached:  # a clean stop: the replies in flight are paid for, so wait for them
        pool.shutdown(wait=True, cancel_futures=True)
        cache.file.close()
        raise
    finally:  # on an error or Ctrl-C: drop the requests not yet started
        pool.shutdown(wait=False, cancel_futures=True)


def label_llm(records, cfg, train, types=None):
    """Label records with an LLM -> (labels, stats), or (None, stats) with --dry_run; no reply is paid twice.
    A reply that is not the JSON answer asked for is kept raw, its sentence unlabelled (an "error" label)."""
    if not cfg.llm_model:
        raise TeacherError("--teacher=llm needs --llm_model=NAME (and --base_url=... of the server)")
    if cfg.shots > len(train):
        raise TeacherError(f"--shots={cfg.shots}: the train split has {len(train)} sentences to draw from")
    texts = [r["text"] for r in records]
    shots = nearest(texts, train, cfg.shots) if cfg.shot_selection == "similar" else \
        [random.Random(0).sample(train, cfg.shots)] * len(records)
    url = cfg.base_url.rstrip("/") + "/chat/completions"
    cache = ReplyCache(cfg.cache)
    json_mode = {"response_format": {"type": "json_object"}} if cfg.json_mode else {}
    bodies = [{"model": cfg.llm_model, "messages": messages_for(text, k_shots, types), "temperature": 0.0,
               "seed": 0, "max_tokens": cfg.max_tokens, **json_mode} for text, k_shots in zip(texts, shots)]
    # The key covers everything that shapes the reply: the URL, the model, the whole prompt, the parameters.
    keys = [hashlib.sha256(json.dumps([url, b], sort_keys=True).encode()).hexdigest() for b in bodies]
    todo = {k: b for k, b in zip(keys, bodies) if k not in cache.replies}
    print(f"teacher llm: {len(records)} sentences, {len(records) - len(todo)} cached, {len(todo)} to ask "
          f"{cfg.llm_model} at {url} ({cfg.concurrency} at a time)", file=sys.stderr)
    if cfg.dry_run:
        cache.file.close()
        answers = [len(json.dumps(answer_for(r, types))) / 4 for r in train] or [10]
        usage = estimate_usage(todo.values(), sum(answers) / len(answers))  # answers as long as train's
        print(f"dry run: nothing sent. {len(todo)} requests to send, {len(records) - len(todo)} cached; "
              f"about {usage['prompt_tokens']:,.0f} prompt and {usage['completion_tokens']:,.0f} completion "
              f"tokens; about {cost_usd(cfg, usage):.2f} USD at --price_in={cfg.price_in:g} --price_out="
              f"{cfg.price_out:g} per million tokens", file=sys.stderr)
        return None, {"sentences": len(records), "requests": len(todo)}
    t0 = time.time()
    ask_live(todo, cfg, cache, url)
    cache.file.close()  # all answered: release the lock (on an error, the workers in flight still write)
    paid = [cache.replies[key].get("usage") or {} for key in todo]
    stats = {"sentences": len(records), "requests": len(todo), "failed_replies": 0, "truncated": 0,
             "strings": 0, "aligned": 0,
             **{n: sum(u.get(n, 0) for u in paid) for n in ("prompt_tokens", "completion_tokens")},
             "requests_per_s": len(todo) / (time.time() - t0) if todo else 0.0}
    stats["cost_usd"] = cost_usd(cfg, stats)
    labels = []
    for record, key in zip(records, keys):
        reply = cache.replies[key]
        choice = (reply.get("choices") or [{}])[0]
        content = (choice.get("message") or {}).get("content") or ""
        stats["truncated"] += choice.get("finish_reason") == "length"
        fields, given, aligned = spans_from_reply(content, record["text"], types)
        stats["failed_replies"] += fields is None  # kept raw, never read as "no adverse event"
        stats["strings"] += given
        stats["aligned"] += aligned
        labels.append({"id": record["id"], "text": record["text"], "teacher": "llm",
                       **(fields or {"error": "the reply is not the JSON answer"}),
                       "raw": {"content": content, "finish_reason": choice.get("finish_reason"),
                               "usage": reply.get("usage")}})
    return labels, stats


# ----------------------------------------------------------------------------- offline teachers

def label_lexicon(records, train, types=None, labelled=None, min_precision=0.0):
    """Distant supervision from the train split's mention strings (terms under 3 characters are left out);
    with min_precision > 0, only terms whose matches in `labelled` (train + ADE-free sentences) are annotated
    that often: "depression" or "infection" as an adverse event is mostly something else."""
    def term_list(spans_of):  # spans_of: a record -> its annotated spans of one kind, {(start, end)}
        terms = data.TermList({r["text"][s:e].lower() for r in train for s, e in spans_of(r)})
        if not min_precision:
            return terms
        matched, annotated = Counter(), Counter()
        for r in labelled or train:
            gold = spans_of(r)
            for s, e in terms.spans(r["text"]):
                matched[r["text"][s:e].lower()] += 1
                annotated[r["text"][s:e].lower()] += (s, e) in gold
        return data.TermList(t for t in terms.terms
                             if matched[t] and annotated[t] / matched[t] >= min_precision)

    if types is None:
        drugs = term_list(lambda r: {tuple(p["drug"]) for p in r.get("pairs", [])})
        ades = term_list(lambda r: {tuple(p["ade"]) for p in r.get("pairs", [])})
        found = [{"pairs": [{"drug": list(d), "ade": list(a)}
                            for d, a in itertools.product(drugs.spans(r["text"]), ades.spans(r["text"]))]}
                 for r in records]
    else:
        term_lists = {t: term_list(lambda r, t=t: {tuple(e["span"]) for e in r.get("entities", [])
                                                   if e["type"] == t}) for t in types}
        found = [{"entities": [{"span": list(span), "type": t} for t, terms in term_lists.items()
                               for span in terms.spans(r["text"])]} for r in records]
    labels = [{"id": r["id"], "text": r["text"], "teacher": "lexicon", **f} for r, f in zip(records, found)]
    return labels, {"sentences": len(records)}


def label(records, teacher, cfg, train, gold=None, types=None):
    """Dispatch on the teacher's name -> (labels, stats); "gold" copies the records' annotations in `gold`.
    "llm+lexicon" asks both: the union of the answers given (none if neither answered), each one's own
    labels under "teachers"."""
    if "+" in teacher:
        names, key = teacher.split("+"), "entities" if types else "pairs"
        each = [label(records, name, cfg, train, gold, types) for name in names]
        stats = {k: v for _, part_stats in each for k, v in part_stats.items()}
        if any(labels is None for labels, _ in each):  # --dry_run
            return None, stats
        combined = []
        for own in zip(*(labels for labels, _ in each)):
            record = {"id": own[0]["id"], "text": own[0]["text"], "teacher": teacher,
                      "teachers": {n: {k: v for k, v in o.items() if k not in ("id", "text", "teacher")}
                                   for n, o in zip(names, own)}}
            if any(key in o for o in own):
                answered = [u for o in own for u in o.get(key, [])]
                record[key] = [u for i, u in enumerate(answered) if u not in answered[:i]]
            combined.append(record)
        return combined, stats
    if teacher == "llm":
        return label_llm(records, cfg, train, types)
    if teacher == "lexicon":
        return label_lexicon(records, train, types, gold, LEXICON_MIN_PRECISION)
    if teacher != "gold":
        raise TeacherError(f"unknown teacher {teacher!r}; choose llm, lexicon or gold")
    by_id = {r["id"]: r for r in (gold if gold is not None else train)}
    missing = [r["id"] for r in records if r["id"] not in by_id]
    if missing:
        raise TeacherError(f"the gold teacher has no annotation for {len(missing)} sentences (e.g. "
                           f"{missing[:3]}); it labels only sentences of the training data")
    return [{**by_id[r["id"]], "teacher": "gold"} for r in records], {"sentences": len(records)}


def training_set(labels, empty_ratio, seed):
    """Every sentence the teacher labelled, plus `empty_ratio` sentences it found nothing in per labelled
    sentence (drawn with the seed; -1 keeps them all). Gold teacher, ratio 0: the paper's supervised set."""
    answered = [r for r in labels if "pairs" in r or "entities" in r]  # a failed LLM reply has neither
    labelled = [r for r in answered if r.get("pairs") or r.get("entities")]
    empty = [r for r in answered if not (r.get("pairs") or r.get("entities"))]
    if len(answered) < len(labels):
        print(f"note: {len(labels) - len(answered)} sentences have no teacher answer and are left out",
              file=sys.stderr)
    if empty_ratio >= 0:
        empty = random.Random(seed).sample(empty, min(len(empty), round(empty_ratio * len(labelled))))
    print(f"training set: {len(labelled)} sentences with teacher labels + {len(empty)} without",
          file=sys.stderr)
    return labelled + empty


def describe(stats):
    """One line of labeling figures for the log."""
    parts = [f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in stats.items()]
    if stats.get("strings"):
        parts.append(f"alignment={stats['aligned'] / stats['strings']:.1%}")
    return "teacher: " + " ".join(parts)


# ----------------------------------------------------------------------------- the command line

def main(argv):
    paths = dict(a[2:].split("=", 1) for a in argv if a.startswith(("--in=", "--out=")))
    if set(paths) != {"in", "out"}:
        sys.exit("usage: python teacher.py --in=SENTENCES.jsonl --out=LABELS.jsonl "
                 "[--teacher=llm|lexicon|gold] [--base_url=... --llm_model=... --shots=K ...]")
    cfg = TeacherConfig.parse([a for a in argv if not a.startswith(("--in=", "--out="))])
    check_config(cfg)
    records = list(data.iter_sentences(paths["in"]))
    splits = data.load_splits(data.data_root(cfg.data_dir), cfg.dataset)
    types = None if cfg.task == "ade" else data.entity_types(splits["train"])
    labels, stats = label(records, cfg.teacher, cfg, splits["train"], splits["train"] + splits["negatives"],
                          types)
    print(describe(stats), file=sys.stderr)
    if labels is not None:  # None: --dry_run
        data.write_jsonl_file(labels, paths["out"])
        print(f"wrote {len(labels)} labelled sentences to {paths['out']}", file=sys.stderr)


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except (TeacherError, OSError, data.InputError) as e:
        sys.exit(f"error: {e}")
    except KeyboardInterrupt:
        sys.exit("\ninterrupted: the replies received so far are cached; rerun the same command to go on")
