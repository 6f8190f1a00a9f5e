"""llama.cpp's own server (`llama-server`) started for a run, on 127.0.0.1 only.

The embedded model decodes several sequences at once in llama-server's parallel slots (continuous
batching): the graph reaches it through `ChatOpenAI`, the code path of hosted and vLLM models.
This module owns the processes:

- a free port on 127.0.0.1 (nothing listens beyond loopback), a health check before the first call,
  the server's log in a file (the run folder's when the run names one);
- one server per (model file, slots, context): the reasoner and critic share the base model's, the
  adapted writer has its own (its adapter merged into the weights: `tools.llm.merged_weights`);
- stopped with the run, at interpreter exit, on SIGTERM, and by the kernel when the Python process
  dies without a word (SIGKILL): the child is started with PR_SET_PDEATHSIG from a thread that
  lives as long as the process, so no server outlives its run;
- every failure as one line naming the cause and the fix: the binary missing, a port in use, a
  server that does not start or dies mid-run (with the tail of its log).
"""

from __future__ import annotations

import atexit
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
from synthtrials.tools.llm.errors import LLMConfigError, LLMError

#: where setup.sh installs llama.cpp's tools (scripts/build_llama_cpp.sh); SYNTHTRIALS_LLAMA_CPP_BIN overrides
BIN_ENV = "SYNTHTRIALS_LLAMA_CPP_BIN"
HOST = "127.0.0.1"
START_TIMEOUT_S = 120.0
#: how long a stopped server may take to exit on SIGTERM before it is killed. With answers in decoding
#: llama-server does not exit on SIGTERM within 10 s (measured: a run's stop waited the whole 10 s);
#: it keeps nothing on disk, so a kill loses nothing
STOP_GRACE_S = 1.0
_PR_SET_PDEATHSIG = 1


def llama_cpp_tool(name: str) -> Path:
    """The path of one of llama.cpp's tools (llama-server, llama-quantize, llama-export-lora)."""
    chosen = os.environ.get(BIN_ENV)
    if chosen:  # the user's folder, and only it
        if (Path(chosen) / name).is_file():
            return Path(chosen) / name
        raise LLMConfigError(f"{name} not found in {chosen} ({BIN_ENV}): point it at a folder holding llama.cpp's "
                             "tools, or unset it to use those `bash setup.sh` builds")
    installed = Path(sys.prefix) / "opt" / "llama.cpp" / "bin"
    if (installed / name).is_file():
        return installed / name
    found = shutil.which(name)
    if found:
        return Path(found)
    raise LLMConfigError(f"{name} not found in {installed}: run `bash setup.sh` (it builds llama.cpp's tools) "
                         f"or set {BIN_ENV} to a folder holding {name}")


@dataclass(frozen=True)
class ServerSpec:
    """What a server serves: the model file, parallel slots, context per slot, threads, port (0: free)."""

    model_path: str
    lora_path: str | None = None  #: a LoRA adapter GGUF applied at run time (else none, or merged into the model)
    slots: int = 8
    ctx_per_slot: int = 2048
    threads: int = 0
    port: int = 0
    log_dir: str | None = None

    def key(self) -> tuple[str, str, int, int]:
        return (str(Path(self.model_path).resolve()), str(self.lora_path), self.slots, self.ctx_per_slot)


def default_threads() -> int:
    """As many threads as cores. Measured alone on 2 cores (benchmarks/RESULTS.md, writer speed), the
    grammar-constrained writer decoded 123 tokens/s with 2 threads and 46 with 1 (the grammar runs on
    the server's own thread between decoding steps), and a whole run with 2 threads accepted 5.4 trials
    a minute. llama.cpp's threads wait for each other at every operation, so when other jobs load the
    cores, fewer threads (`--threads`, `LLMConfig.n_threads`) keep it steady: on 2 busy cores 2 threads
    decoded at 2-10 tokens/s, 1 thread at 28."""
    return max(1, os.cpu_count() or 1)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((HOST, port))
        except OSError:
            return True
    return False


def _die_with_parent() -> None:  # runs in the child between fork and exec
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


#: PR_SET_PDEATHSIG fires when the *thread* that forked the child ends: servers are forked from one
#: thread that lives as long as the process, whichever thread asks for a server
_SPAWNER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llama-server-spawner")


class LlamaServer:
    """One llama-server process serving one model on 127.0.0.1."""

    def __init__(self, spec: ServerSpec) -> None:
        self.spec = spec
        self.port = spec.port or free_port()
        self.process: subprocess.Popen[bytes] | None = None
        #: set when synthtrials stops the server: requests to it are refused without a connection
        self.stopped = threading.Event()
        log_dir = Path(spec.log_dir) if spec.log_dir else Path(os.environ.get("TMPDIR", "/tmp"))
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = log_dir / f"llama-server.{Path(spec.model_path).stem}.log"

    @property
    def url(self) -> str:
        """The OpenAI-compatible base URL."""
        return f"http://{HOST}:{self.port}/v1"

    @property
    def name(self) -> str:
        return f"llama-server ({Path(self.spec.model_path).name})"

    def command(self) -> list[str]:
        spec = self.spec
        threads = spec.threads or default_threads()
        return [str(llama_cpp_tool("llama-server")), "--model", spec.model_path, "--host", HOST, "--port", str(self.port),
                "--parallel", str(spec.slots), "--ctx-size", str(spec.slots * spec.ctx_per_slot),
                "--threads", str(threads), "--threads-batch", str(threads), "--cont-batching",
                "--no-webui", *(["--lora", spec.lora_path] if spec.lora_path else [])]

    def start(self) -> LlamaServer:
        if self.spec.port and port_in_use(self.spec.port):
            raise LLMConfigError(f"port {self.spec.port} on {HOST} is in use: stop what listens there or let "
                                 "synthtrials choose a free port (leave the port unset)")
        command = self.command()
        log = self.log_path.open("ab")
        log.write(f"\n# synthtrials: {' '.join(command)}\n".encode())
        log.flush()

        def spawn() -> subprocess.Popen[bytes]:
            return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    preexec_fn=_die_with_parent, close_fds=True)

        self.process = _SPAWNER.submit(spawn).result()
        log.write(f"# synthtrials: pid {self.process.pid}\n".encode())
        log.close()
        _REGISTRY.track(self)
        self._wait_healthy()
        return self

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        with httpx.Client(timeout=2.0) as client:
            while time.monotonic() < deadline:
                if not self.alive():
                    raise LLMConfigError(self.exit_message("did not start"))
                try:
                    if client.get(f"http://{HOST}:{self.port}/health").status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                time.sleep(0.1)
        self.stop()
        raise LLMConfigError(f"{self.name} did not answer its health check within {START_TIMEOUT_S:g} s "
                             f"(log: {self.log_path})")

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, lines: int = 3) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        useful = [line.strip() for line in text if line.strip() and not line.startswith("# synthtrials")]
        return " | ".join(useful[-lines:])[:300]

    def exit_message(self, what: str) -> str:
        code = self.process.poll() if self.process is not None else None
        tail = self.log_tail()
        cause = f"exited with code {code}" if code is not None else "stopped"
        hint = ("port in use: run again (a free port is chosen)" if "bind" in tail.lower() or "address already" in tail.lower()
                else "check the model file and the log")
        return f"{self.name} {what}: {cause}{f' ({tail})' if tail else ''}; {hint}; log: {self.log_path}"

    def http_client(self) -> httpx.Client:
        """The HTTP client of the server's `ChatOpenAI`: once the server is stopped, a request is
        answered at once (`StoppedServerTransport`) instead of being retried against a closed port."""
        return httpx.Client(transport=StoppedServerTransport(self))

    def stop(self) -> None:
        self.stopped.set()
        process = self.process
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        _REGISTRY.forget(self)


class StoppedServerTransport(httpx.HTTPTransport):
    """httpx's transport, which answers 400 without connecting once `server` is stopped. The OpenAI
    SDK retries a refused connection (4 times, 0.5-4 s apart): the draws a run stops waited 6 s in
    those retries after their server was gone; a 400 is not retried, and the client reads it as the
    stop (`LLMClient.calls_stopped`) or as a server that is gone."""

    def __init__(self, server: LlamaServer) -> None:
        super().__init__()
        self.server = server

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if self.server.stopped.is_set():
            message = f"{self.server.name} was stopped by synthtrials; re-run the same command to resume"
            return httpx.Response(400, json={"error": {"message": message, "type": "server_stopped"}}, request=request)
        return super().handle_request(request)


class ServerRegistry:
    """The servers this process started: shared by spec, stopped together."""

    def __init__(self) -> None:
        self._servers: dict[tuple[str, str, int, int], LlamaServer] = {}
        self._lock = threading.Lock()
        self._hooks_installed = False

    def serve(self, spec: ServerSpec) -> LlamaServer:
        """The running server for `spec`, started when there is none."""
        with self._lock:
            server = self._servers.get(spec.key())
            if server is not None and server.alive():
                return server
            self._install_hooks()
            return LlamaServer(spec).start()

    def track(self, server: LlamaServer) -> None:
        self._servers[server.spec.key()] = server

    def forget(self, server: LlamaServer) -> None:
        if self._servers.get(server.spec.key()) is server:
            del self._servers[server.spec.key()]

    def running(self) -> list[LlamaServer]:
        return [s for s in self._servers.values() if s.alive()]

    def by_url(self, url: str | None) -> LlamaServer | None:
        return next((s for s in self._servers.values() if url and s.url == url.rstrip("/")), None)

    def stop_all(self, keep: list[LlamaServer] | None = None) -> None:
        for server in list(self._servers.values()):
            if keep is None or server not in keep:
                server.stop()

    def _install_hooks(self) -> None:
        if self._hooks_installed:
            return
        self._hooks_installed = True
        atexit.register(self.stop_all)
        if threading.current_thread() is threading.main_thread() \
                and signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
            def on_term(signum: int, frame: object) -> None:
                self.stop_all()
                raise SystemExit(128 + signum)

            signal.signal(signal.SIGTERM, on_term)


_REGISTRY = ServerRegistry()


def serve(spec: ServerSpec) -> LlamaServer:
    """The running llama-server for `spec` (started, health-checked, stopped at exit)."""
    return _REGISTRY.serve(spec)


def running_servers() -> list[LlamaServer]:
    return _REGISTRY.running()


def stop_servers(keep: list[LlamaServer] | None = None) -> None:
    """Stop every server this process started, but those in `keep`."""
    _REGISTRY.stop_all(keep)


def dead_server_error(base_url: str | None) -> LLMError | None:
    """A one-line fatal error when the managed server behind `base_url` has died, else None."""
    server = _REGISTRY.by_url(base_url)
    if server is None or server.alive():
        return None
    error = LLMConfigError(server.exit_message("died mid-run") + "; re-run the same command to resume")
    return error
