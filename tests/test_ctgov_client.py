"""The API v2 client against a real HTTP server on 127.0.0.1 (paging, 429/5xx retries)."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import pytest
from support import FIXTURES, cli
from synthtrials.tools.readers.ctgov_client import CtGovClient, retry_after_seconds
from synthtrials.tools.errors import ConfigError

STUDY = json.loads((FIXTURES / "ctgov_v2_study.json").read_text())


def study_with_id(n: int) -> dict:
    study = json.loads(json.dumps(STUDY))
    study["protocolSection"]["identificationModule"]["nctId"] = f"NCT{n:08d}"
    return study


class FakeCtGov(BaseHTTPRequestHandler):
    """Five studies over pages of two; the first page request answers 429 once, then 500 once."""

    faults: list[tuple[int, dict]] = []
    log: list[str] = []

    def log_message(self, *args):  # keep test output quiet
        pass

    def _send(self, status: int, body: dict | str, headers: dict | None = None):
        data = (json.dumps(body) if isinstance(body, dict) else body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        url = urlparse(self.path)
        self.log.append(self.path)
        if self.faults:
            status, headers = self.faults.pop(0)
            return self._send(status, {"error": "fault"}, headers)
        if url.path.startswith("/api/v2/studies/"):
            nct = url.path.rsplit("/", 1)[1]
            if nct == "NCT00000404":
                return self._send(404, {"error": "not found"})
            return self._send(200, study_with_id(int(nct[3:])))
        if url.path == "/api/v2/studies":
            query = parse_qs(url.query)
            assert query["query.term"] == ["metformin"]
            start = int(query.get("pageToken", ["0"])[0])
            size = int(query["pageSize"][0])
            ids = list(range(1, 6))[start:start + size]
            body = {"studies": [study_with_id(i) for i in ids]}
            if start + size < 5:
                body["nextPageToken"] = str(start + size)
            return self._send(200, body)
        return self._send(404, {})


@pytest.fixture()
def server():
    FakeCtGov.faults = []
    FakeCtGov.log = []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), FakeCtGov)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/api/v2"
    httpd.shutdown()


def test_paging_and_retries(server):
    FakeCtGov.faults = [(429, {"Retry-After": "0"}), (503, {})]
    with CtGovClient(server, min_interval=0.0, backoff=0.01) as client:
        studies = list(client.search("metformin", page_size=2))
        assert [s["protocolSection"]["identificationModule"]["nctId"] for s in studies] == [
            f"NCT{i:08d}" for i in range(1, 6)]
        assert client.retries == 2 and client.requests_made == 5  # 2 faults + 3 pages
        assert len(list(client.search("metformin", page_size=2, max_studies=3))) == 3
        assert client.study("NCT00000007")["protocolSection"]["identificationModule"]["nctId"] == "NCT00000007"
        with pytest.raises(ConfigError, match="not found"):
            client.study("NCT00000404")


def test_gives_up_after_bounded_retries(server):
    FakeCtGov.faults = [(500, {})] * 10
    with CtGovClient(server, min_interval=0.0, backoff=0.001, max_retries=3) as client:
        with pytest.raises(ConfigError, match="gave up after 3 retries"):
            client.study("NCT00000001")


def test_rate_limit_spaces_requests(server):
    import time

    with CtGovClient(server, min_interval=0.2) as client:
        start = time.monotonic()
        for i in range(4):
            client.study(f"NCT{i + 1:08d}")
        assert time.monotonic() - start >= 0.55


def test_retry_after_parsing():
    assert retry_after_seconds("3") == 3.0
    assert retry_after_seconds(None) is None
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0


def test_fetch_cli_then_ingest(server, tmp_path):
    out = tmp_path / "studies.json"
    result = cli("fetch", "--query", "metformin", "--max", "4", "--nct", "NCT00000009", "--out", str(out),
                     "--base-url", server, "--min-interval", "0")
    assert result.returncode == 0, result.stderr
    assert len(json.loads(out.read_text())["studies"]) == 5
    store = tmp_path / "store"
    ingest = cli("ingest", str(out), "--store", str(store))
    assert ingest.returncode == 0 and "stored 5 trials" in ingest.stdout
    missing = cli("fetch", "--nct", "NCT00000404", "--out", str(tmp_path / "x.json"), "--base-url", server,
                      "--min-interval", "0")
    assert missing.returncode == 2 and "not found" in missing.stderr and not (tmp_path / "x.json").exists()
