"""A scriptable OpenAI-compatible chat server on 127.0.0.1, for control-flow tests only.

It never stands in for generation quality: tests of generation use llama.cpp. It answers
`POST /v1/chat/completions` with a queue of scripted faults (HTTP status + headers, delays,
truncated or non-JSON bodies, connection resets), then with `default_content` after
`delay_s`. Every request body is recorded.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Fault:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    content: str | None = None      # the assistant message content (200 only)
    raw_body: bytes | None = None   # send these bytes as the body instead (truncated / non-JSON)
    reset: bool = False             # close the connection without answering


class FakeOpenAIServer:
    def __init__(self, default_content: str = "ok", delay_s: float = 0.0,
                 responder: Callable[[dict[str, Any]], str] | None = None) -> None:
        self.default_content = default_content
        self.responder = responder
        self.delay_s = delay_s
        self.faults: deque[Fault] = deque()
        self.requests: list[dict[str, Any]] = []
        self.headers_seen: list[dict[str, str]] = []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                try:
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeouts)
                    pass

            def do_GET(self) -> None:
                self._send(200, json.dumps({"object": "list", "data": [{"id": "fake-model", "object": "model"}]}).encode())

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                payload = json.loads(self.rfile.read(length) or b"{}")
                with server._lock:
                    server.requests.append(payload)
                    server.headers_seen.append(dict(self.headers))
                    fault = server.faults.popleft() if server.faults else Fault(delay_s=server.delay_s)
                if fault.delay_s:
                    time.sleep(fault.delay_s)
                if fault.reset:
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                if fault.raw_body is not None:
                    return self._send(fault.status, fault.raw_body, fault.headers)
                if fault.status != 200:
                    body = {"error": {"message": f"fault {fault.status}", "type": "fake", "code": fault.status}}
                    return self._send(fault.status, json.dumps(body).encode(), fault.headers)
                if fault.content is not None:
                    content = fault.content
                elif server.responder is not None:
                    content = server.responder(payload)
                else:
                    content = server.default_content
                body = {
                    "id": "chatcmpl-fake", "object": "chat.completion", "created": int(time.time()),
                    "model": payload.get("model", "fake-model"),
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": content}}],
                    "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
                }
                self._send(200, json.dumps(body).encode(), fault.headers)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self) -> FakeOpenAIServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


# --- a scripted "model" for control-flow tests of the generation graph --------------------------

_CONDITIONS = ["asthma", "psoriasis", "migraine", "gout", "glaucoma", "rosacea", "insomnia", "anemia", "sepsis",
               "lupus", "hepatitis b", "osteoporosis", "melanoma", "obesity", "tuberculosis", "celiac disease"]
_WORDS = ["adaptive", "staggered", "pragmatic", "crossover", "open", "pilot", "bridging", "extension", "multicentre",
          "community", "hospital", "outpatient", "paediatric", "elderly", "dose", "titration", "biomarker", "imaging"]


def scripted_trial_answer(payload: dict[str, Any]) -> str:
    """Valid, varied JSON for the writer / reasoner / critic schemas (by response_format name)."""
    import random
    import re

    fmt = payload.get("response_format") or {}
    name = (fmt.get("json_schema") or {}).get("name", "")
    seed = int(payload.get("seed") or 0)
    rng = random.Random(seed)
    if name == "Reasons":
        return json.dumps({"reasons": [f"Reason {i}: {rng.choice(_WORDS)} design matters" for i in range(5)]})
    if name == "CriticJudgement":
        return json.dumps({"consistent": True, "problems": []})
    user = payload["messages"][-1]["content"]
    match = re.search(r"Write a new clinical trial of (.+?):", user)
    drug = match.group(1) if match else "drug x"
    condition = rng.choice(_CONDITIONS)
    words = rng.sample(_WORDS, 4)
    return json.dumps({
        "brief_title": f"A {words[0]} {words[1]} study of {drug} in {condition} number {seed}",
        "phase": rng.choice(["phase 1", "phase 2", "phase 3"]),
        "conditions": [condition],
        "interventions": [{"name": drug, "type": "drug", "description": f"{drug} given {words[2]}"}],
        "brief_summary": f"This {words[3]} study evaluates {drug} for {condition} with {words[0]} follow up "
                         f"and {words[1]} assessments of safety and activity, variant {seed}.",
        "inclusion_criteria": [f"Adults with {condition}", f"Able to take {drug} by mouth"],
        "exclusion_criteria": ["Pregnant or breastfeeding women", f"Known allergy to {drug}"],
        "enrollment": rng.randint(30, 300),
        "allocation": "randomized", "masking": "double", "primary_purpose": "treatment",
        "primary_outcomes": [{"measure": f"Change in {condition} severity score", "time_frame": "12 weeks"}],
    })
