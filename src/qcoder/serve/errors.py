"""Errors in the OpenAI format: `{"error": {"message", "type", "param", "code"}}` with a matching status."""

from __future__ import annotations

from fastapi.responses import JSONResponse

from qcoder.serve.protocol import ErrorInfo, ErrorResponse

# status -> the OpenAI error type clients switch on
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "not_found_error",
    405: "invalid_request_error",
    429: "rate_limit_error",
    500: "server_error",
    503: "service_unavailable_error",
}


RETRY_AFTER_S = 1  # a full or draining server frees up quickly: sequences finish every few seconds


class APIError(Exception):
    """A request the server answers with an error status; raised anywhere below a route."""

    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code

    def body(self) -> ErrorResponse:
        return error_body(self.status, self.message, param=self.param, code=self.code)

    def response(self) -> JSONResponse:
        headers = {"Retry-After": str(RETRY_AFTER_S)} if self.status in (429, 503) else None
        return JSONResponse(self.body().model_dump(), status_code=self.status, headers=headers)


def error_body(status: int, message: str, *, param: str | None = None, code: str | None = None) -> ErrorResponse:
    kind = ERROR_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return ErrorResponse(error=ErrorInfo(message=message, type=kind, param=param, code=code))


def bad_request(message: str, param: str | None = None, code: str | None = None) -> APIError:
    return APIError(400, message, param=param, code=code)
