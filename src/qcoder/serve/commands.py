"""CLI: `qcoder serve`, an OpenAI-compatible server in front of the engine.

    qcoder serve --model qwen2.5-coder-0.5b-instruct --port 8000 --api-key secret
    OPENAI_BASE_URL=http://127.0.0.1:8000/v1 OPENAI_API_KEY=secret qwen   # e.g. Qwen Code

SIGINT/SIGTERM stop accepting requests, let running ones finish for a few seconds, then exit cleanly.
"""

from __future__ import annotations

import os
from pathlib import Path

from qcoder.engine.commands import add_cpu_options
from qcoder.errors import QcoderError

TOOL_CALL_PARSERS = ("auto", "qwen3_coder", "hermes")
DRAIN_SECONDS = 5
STREAM_KEEPALIVE_S = 15.0  # well inside the idle timeouts of agent clients (Qwen Code gives up after 240 s)


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "serve",
        help="run an OpenAI-compatible server",
        description="Serve a model over the OpenAI API: /v1/chat/completions, /v1/completions, /v1/models, "
        "/health and /metrics (Prometheus).",
    )
    p.add_argument(
        "--model",
        default=None,
        help="local path, registry short name or HF repo id (default: the registry's default model)",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    p.add_argument("--port", type=int, default=8000, help="port to listen on (default: %(default)s)")
    p.add_argument(
        "--api-key",
        default=None,
        help="require 'Authorization: Bearer KEY' on /v1 routes (default: $QCODER_API_KEY, else open)",
    )
    p.add_argument("--served-model-name", default=None, help="the model id clients send (default: --model)")
    p.add_argument("--max-num-seqs", type=int, default=16, help="sequences in the running batch (default: 16)")
    p.add_argument(
        "--max-waiting",
        type=int,
        default=64,
        help="sequences that may wait for a slot; past it requests get 429 (default: 64)",
    )
    p.add_argument("--max-model-len", type=int, default=None, help="context window (default: the model's)")
    p.add_argument(
        "--tool-call-parser",
        choices=TOOL_CALL_PARSERS,
        default="auto",
        help="tool-call format; auto picks it from the chat template (default: auto)",
    )
    p.add_argument(
        "--dtype",
        choices=("auto", "float32", "bfloat16", "float16"),
        default="auto",
        help="weights and KV-cache dtype; auto is bfloat16 on a GPU, float32 on CPU",
    )
    p.add_argument(
        "--stream-keepalive-s",
        type=float,
        default=STREAM_KEEPALIVE_S,
        metavar="N",
        help="while a stream has nothing to send (a long prompt in prefill), send an empty delta every N seconds, "
        "so clients with an idle timeout keep waiting; 0 disables (default: %(default)s)",
    )
    add_cpu_options(p)
    p.add_argument(
        "--prompt-cache",
        metavar="DIR",
        help="keep the K/V of each request's system turn (a client's instructions and tool schemas) in files under "
        "DIR, so that after a restart the first request loads it instead of computing it (default: off: the "
        "server writes nothing of what clients send)",
    )
    p.add_argument(
        "--drain-seconds",
        type=float,
        default=DRAIN_SECONDS,
        help="on SIGINT/SIGTERM, how long running requests may finish before exit (default: %(default)s)",
    )
    p.set_defaults(func=run)


def run(args) -> int:
    import socket

    for name in ("max_num_seqs", "max_waiting", "max_model_len"):
        value = getattr(args, name)
        if value is not None and value < (0 if name == "max_waiting" else 1):
            raise QcoderError(f"--{name.replace('_', '-')} must be a positive number, got {value}")
    if not 0 <= args.stream_keepalive_s < float("inf"):  # also refuses nan
        raise QcoderError(f"--stream-keepalive-s must be 0 (off) or a number of seconds, got {args.stream_keepalive_s}")
    sock = _bind(socket, args.host, args.port)  # before the heavy imports and loading: a busy port fails fast


    from qcoder.engine.async_engine import AsyncLLMEngine
    from qcoder.engine.engine import LLMEngine
    from qcoder.model.registry import DEFAULT_MODEL
    from qcoder.serve.app import create_app
    from qcoder.serve.state import ServerState

    model = args.model or DEFAULT_MODEL
    api_key = args.api_key or os.environ.get("QCODER_API_KEY") or None
    opts = {"max_num_seqs": args.max_num_seqs, "speculative": args.speculative}
    if args.max_model_len:
        opts["max_model_len"] = args.max_model_len
    if args.prompt_cache:
        opts["prompt_cache"] = Path(args.prompt_cache).expanduser()
    engine = LLMEngine(model, dtype=args.dtype, quant=args.quant, threads=args.threads, **opts)
    engine.structured.warm_up_in_background()  # the first structured-output request need not wait for it
    state = ServerState.for_engine(
        AsyncLLMEngine(engine),
        engine,
        model_name=args.served_model_name or model,
        max_num_seqs=args.max_num_seqs,
        max_waiting=args.max_waiting,
        api_key=api_key,
        tool_call_parser=args.tool_call_parser,
        stream_keepalive_s=args.stream_keepalive_s,
    )
    app = create_app(state)
    host, port = sock.getsockname()[:2]
    print(
        f"qcoder serve: http://{_url_host(host)}:{port}/v1  model={state.model_name}  "
        f"max_model_len={state.max_model_len}  max_num_seqs={state.max_num_seqs}  "
        f"max_waiting={state.max_waiting}  tool_call_parser={state.tool_parser.name}  "
        f"auth={'on' if api_key else 'off'}",
        flush=True,
    )
    serve(app, state, sock, drain_seconds=args.drain_seconds)
    return 0


def serve(app, state, sock, drain_seconds: float = DRAIN_SECONDS) -> None:
    """Run uvicorn on a bound socket until SIGINT/SIGTERM, then drain (503 for new requests) and exit."""
    import contextlib
    import signal

    import uvicorn

    class DrainingServer(uvicorn.Server):
        def handle_exit(self, sig, frame):
            state.draining = True
            super().handle_exit(sig, frame)

        @contextlib.contextmanager
        def capture_signals(self):
            # uvicorn re-raises the signal after shutting down (exit status -15, or KeyboardInterrupt);
            # a drained server has stopped on request, so it exits with status 0 instead.
            previous = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
            try:
                yield
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)

    config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=drain_seconds, access_log=False)
    DrainingServer(config).run(sockets=[sock])


def _bind(socket, host: str, port: int):
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise QcoderError(f"cannot resolve --host {host!r}: {exc}") from exc
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise QcoderError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
