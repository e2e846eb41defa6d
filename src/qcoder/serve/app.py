"""The OpenAI-compatible HTTP app: routes, API-key check, errors in the OpenAI format, metrics.

    llm = LLMEngine(path)
    state = ServerState.for_engine(AsyncLLMEngine(llm), llm, model_name="qwen", max_num_seqs=16, max_waiting=64)
    app = create_app(state)  # then run it under uvicorn, as `qcoder serve` does (commands.py)

Request flow: chat.py / completions.py turn a request into engine sequences (convert.py builds the
SamplingParams), generation.py runs them on the engine with admission, metrics and aborts.

Routes: POST /v1/chat/completions, POST /v1/completions (both streaming or not), GET /v1/models,
GET /health and GET /metrics. The /v1 routes need `Authorization: Bearer KEY` when a key is set;
/health and /metrics stay open (load balancers and Prometheus scrape them).

Every error a client can cause comes back as `{"error": {"message", "type", "param", "code"}}` with its
status (malformed JSON and schema errors are 400, not FastAPI's 422), and the server keeps serving.
Bodies are checked for text no tokenizer can take before validation (bodies.py). Whatever fails while
a request's own input is turned into prompts is a 400 naming the failure. A request is admitted (or
refused with 429 and Retry-After) before its response starts, streamed or not.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from qcoder.errors import QcoderError
from qcoder.serve import chat, completions
from qcoder.serve.bodies import CheckedRoute
from qcoder.serve.errors import APIError, bad_request, error_body
from qcoder.serve.generation import Generation
from qcoder.serve.metrics import CONTENT_TYPE
from qcoder.serve.protocol import (
    ChatCompletionRequest,
    CompletionRequest,
    ModelCard,
    ModelList,
)
from qcoder.serve.state import ServerState

log = logging.getLogger("qcoder.serve")

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
ROUTES = ("/v1/chat/completions", "/v1/completions", "/v1/models", "/health", "/metrics")  # for metric labels
CLIENT_CLOSED_REQUEST = 499  # nginx's status for a request whose client left before the answer


def create_app(state: ServerState) -> FastAPI:
    """The app around a ready engine; `state.async_engine` is shut down when the app's lifespan ends."""

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        state.async_engine.shutdown()

    app = FastAPI(title="qcoder", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.router.route_class = CheckedRoute
    app.state.qcoder = state
    app.add_middleware(CountRequests, state=state)
    _install_error_handlers(app)

    def check_api_key(request: Request) -> None:
        if state.api_key is None:
            return
        scheme, _, key = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not secrets.compare_digest(key.strip().encode(), state.api_key.encode()):
            raise APIError(401, "missing or wrong API key: send 'Authorization: Bearer <key>'", code="invalid_api_key")

    def check_model(name: str) -> None:
        if name != state.model_name:
            raise APIError(
                404,
                f"model {name!r} does not exist; this server serves {state.model_name!r}",
                param="model",
                code="model_not_found",
            )

    authorized = [Depends(check_api_key)]

    @app.get("/health")
    async def health():
        return {"status": "draining" if state.draining else "ok"}

    @app.get("/metrics")
    async def metrics():
        return PlainTextResponse(state.metrics.render(state.async_engine.stats()), media_type=CONTENT_TYPE)

    @app.get("/v1/models", dependencies=authorized)
    async def models() -> ModelList:
        return ModelList(data=[ModelCard(id=state.model_name, max_model_len=state.max_model_len)])

    @app.get("/v1/models/{name:path}", dependencies=authorized)
    async def model(name: str) -> ModelCard:
        check_model(name)
        return ModelCard(id=state.model_name, max_model_len=state.max_model_len)

    @app.post("/v1/chat/completions", dependencies=authorized)
    async def chat_completions(req: ChatCompletionRequest, request: Request):
        check_model(req.model)
        state.check_capacity(req.n)  # refuse early; admit() below decides
        prompt = await _from_input(chat.prepare_prompt, state, req)
        params = await _from_input(chat.sampling_params, state, req, prompt)  # compiles any constraint
        generation = Generation(state, [(prompt.token_ids, p) for p in params], "chat")
        generation.admit()
        if req.stream:
            return _sse(chat.stream(state, req, prompt, generation), generation)
        return await _until_disconnect(request, chat.complete(state, req, prompt, generation), generation)

    @app.post("/v1/completions", dependencies=authorized)
    async def text_completions(req: CompletionRequest, request: Request):
        check_model(req.model)
        sequences = await _from_input(completions.sequences_of, state, req)
        generation = Generation(state, sequences, "cmpl")
        generation.admit()
        if req.stream:
            return _sse(completions.stream(state, req, sequences, generation), generation)
        return await _until_disconnect(request, completions.complete(state, req, sequences, generation), generation)

    return app


async def _from_input(prepare, state: ServerState, req, *more):
    """Run `prepare(state, req, *more)` (templates, tokenizing, constraints) off the event loop. It reads only
    the request, so whatever it raises is about the request: a 400 with the reason, never a 500 (logged, to be
    fixed)."""
    try:
        return await run_in_threadpool(prepare, state, req, *more)
    except (APIError, QcoderError):
        raise
    except Exception as exc:
        log.warning("request input failed to convert", exc_info=exc)
        raise bad_request(f"the request could not be turned into a prompt: {type(exc).__name__}: {exc}") from exc


class _Stream(StreamingResponse):
    """A streaming response that lets its generation's admission go however the response ends, even when
    the client leaves before the body starts (the body's own cleanup then never runs)."""

    def __init__(self, body, generation: Generation):
        super().__init__(body, media_type="text/event-stream", headers=SSE_HEADERS)
        self.generation = generation

    async def __call__(self, scope, receive, send):
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.generation.release()


def _sse(lines, generation: Generation) -> StreamingResponse:
    """An SSE response; an error after the first byte can only be told in-band, as an error event."""

    async def body():
        try:
            async for line in lines:
                yield line
        except (APIError, QcoderError) as exc:
            status = exc.status if isinstance(exc, APIError) else 400
            yield f"data: {error_body(status, str(exc)).model_dump_json()}\n\n"
        except Exception:
            log.exception("error while streaming a response")
            yield f"data: {error_body(500, 'internal error while generating').model_dump_json()}\n\n"

    return _Stream(body(), generation)


async def _until_disconnect(request: Request, work, generation: Generation):
    """Await a whole (non-streamed) response, aborting it if the client goes away first.

    Starlette does not cancel a handler when its client disconnects; the engine would keep generating
    for nobody. So the work runs as a task that is cancelled (its sequences aborted) on disconnect.
    """
    task = asyncio.ensure_future(work)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=0.25)
            if done:
                return task.result()
            if await request.is_disconnected():
                task.cancel()
                return Response(status_code=CLIENT_CLOSED_REQUEST)  # nobody reads it; the status shows in /metrics
    finally:
        if not task.done():
            task.cancel()
        generation.release()


class CountRequests:
    """ASGI middleware: counts every HTTP request by endpoint and final status (qcoder_requests_total)."""

    def __init__(self, app, state: ServerState):
        self.app = app
        self.state = state

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        status = [500]

        async def send_and_note(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            endpoint = scope["path"] if scope["path"] in ROUTES else "other"  # scanners must not grow the labels
            self.state.metrics.requests.labels(endpoint=endpoint, status=str(status[0])).inc()


def _is_field(part) -> bool:
    """Parts of a pydantic error location that name request fields (not 'body', not union member tags)."""
    if isinstance(part, int):
        return True
    return part != "body" and part.isidentifier() and part.islower() and part not in UNION_TAGS


UNION_TAGS = {"str", "int", "float", "bool", "list", "dict", "none"}


def _install_error_handlers(app: FastAPI) -> None:
    def respond(status: int, message: str, param: str | None = None, code: str | None = None) -> JSONResponse:
        return JSONResponse(error_body(status, message, param=param, code=code).model_dump(), status_code=status)

    @app.exception_handler(APIError)
    async def api_error(_request, exc: APIError):
        return exc.response()

    @app.exception_handler(QcoderError)
    async def qcoder_error(_request, exc: QcoderError):
        return respond(400, str(exc))

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request, exc: RequestValidationError):
        first = exc.errors()[0]
        if first.get("type") == "json_invalid":
            return respond(
                400,
                f"the request body is not valid JSON: {first.get('ctx', {}).get('error', '')}".strip(),
                code="invalid_json",
            )
        if tuple(first.get("loc", ())) == ("body",):  # no body, or not a JSON object (or not sent as JSON)
            return respond(400, "the request body must be a JSON object (Content-Type: application/json)")
        param = ".".join(str(part) for part in first.get("loc", ()) if _is_field(part)) or None
        message = first.get("msg", "invalid request")
        if param:
            message = f"{param}: {message}"
        extra = len(exc.errors()) - 1
        if extra:
            message += f" (and {extra} more error{'s' if extra > 1 else ''})"
        return respond(400, message, param=param)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request, exc: StarletteHTTPException):
        return respond(exc.status_code, str(exc.detail), param=getattr(exc, "param", None))

    @app.exception_handler(Exception)
    async def unexpected(_request, exc: Exception):
        log.exception("unhandled error", exc_info=exc)
        return respond(500, "internal server error")
