"""A scripted OpenAI-compatible model for the agent and eval tests: a real HTTP server on 127.0.0.1 that replays
planned replies.

A plan entry is a dict with `content` and/or `tool_calls` ([(name, args_dict_or_json_text), ...]),
or {"status": 500} for an error reply, or {"choices": [entry, ...]} for a request with `n`, or a function of the
request body returning such a dict. When the plan is used up, `default(body)` answers (by default "Plan
exhausted."). Both plain and streaming (SSE) chat completions are served; every request body is recorded. Use it
as a context manager, or call close().
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def call(name: str, **args) -> tuple[str, dict]:
    return (name, args)


class FakeModel:
    def __init__(self, plan=None, default=None):
        self.plan = list(plan or [])
        self.default = default or (lambda body: {"content": "Plan exhausted."})
        self.requests: list[dict] = []
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def next_reply(self, body: dict) -> dict:
        with self._lock:
            self.requests.append(body)
            entry = self.plan.pop(0) if self.plan else self.default
        return entry(body) if callable(entry) else entry

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                reply = fake.next_reply(body)
                if reply.get("status"):
                    self._send(reply["status"], {"error": {"message": "scripted failure", "type": "server_error"}})
                elif body.get("stream"):
                    self._stream(body, reply)
                else:
                    self._send(200, _completion(body, reply))

            def _send(self, status, obj):
                data = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _stream(self, body, reply):
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                for chunk in _chunks(body, reply):
                    self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                    time.sleep(reply.get("chunk_delay", 0))  # a slow model: seconds between chunks
                self.wfile.write(b"data: [DONE]\n\n")
                self.wfile.flush()
                self.close_connection = True

        return Handler


def _calls(reply: dict) -> list[dict]:
    out = []
    for i, (name, args) in enumerate(reply.get("tool_calls", [])):
        arguments = args if isinstance(args, str) else json.dumps(args)
        out.append({"id": f"call_{i}_{name}", "type": "function", "function": {"name": name, "arguments": arguments}})
    return out


def _usage(body: dict, reply: dict) -> dict:
    prompt = sum(len(str(m.get("content") or "")) for m in body["messages"]) // 4
    return {"prompt_tokens": prompt, "completion_tokens": len(reply.get("content") or "") // 4 + 1,
            "total_tokens": 0}


def _completion(body: dict, reply: dict) -> dict:
    choices = []
    for index, entry in enumerate(reply.get("choices") or [reply]):
        calls = _calls(entry)
        message = {"role": "assistant", "content": entry.get("content")}
        if calls:
            message["tool_calls"] = calls
        choices.append({"index": index, "message": message, "finish_reason": "tool_calls" if calls else "stop"})
    return {"id": "chatcmpl-fake", "object": "chat.completion", "created": 0, "model": body["model"],
            "choices": choices, "usage": _usage(body, reply)}


def _chunks(body: dict, reply: dict):
    base = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 0, "model": body["model"]}

    def chunk(delta, finish=None):
        return {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    yield chunk({"role": "assistant", "content": ""})
    text = reply.get("content") or ""
    for start in range(0, len(text), 7):
        yield chunk({"content": text[start:start + 7]})
    calls = _calls(reply)
    for i, c in enumerate(calls):
        args = c["function"]["arguments"]
        half = len(args) // 2
        yield chunk({"tool_calls": [{"index": i, "id": c["id"], "type": "function",
                                     "function": {"name": c["function"]["name"], "arguments": args[:half]}}]})
        yield chunk({"tool_calls": [{"index": i, "function": {"arguments": args[half:]}}]})
    yield chunk({}, "tool_calls" if calls else "stop")
    yield {**base, "choices": [], "usage": _usage(body, reply)}
