"""HTTP errors as RFC 9457 problem details, for every Flask app the platform serves (api, callbacks).

Every error answer is `application/problem+json`: `type`, `title`, `status`, `detail`, and for bad
input `problems`, naming each field and what is wrong with it. A 405 carries `Allow`. Nothing a client
sends reaches a statement unchecked, so a 500 means a bug; it is still a problem body, and its log
line names the route and where the code failed, never the request's values (they may be personal data).
"""

from __future__ import annotations

import json
import logging
import traceback
from typing import Any

from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException

from shared.db import DatabaseError, is_data_error, sqlstate
from shared.errors import Conflict, InvalidRequest, RetryableError
from shared.text import MAX_NESTING, text_problem, too_deep, unstorable_text

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
# Request bodies are a few kilobytes; a larger one is refused with 413 before it is read.
MAX_REQUEST_BYTES = 64 * 1024


def problem(status: int, title: str, detail: str | None = None, *, headers: dict[str, str] | None = None,
            **extensions: Any) -> Response:
    """A problem+json response."""
    document = {"type": "about:blank", "title": title, "status": status, **extensions}
    if detail:
        document["detail"] = detail
    return Response(json.dumps(document), status=status, mimetype=PROBLEM_JSON, headers=headers)


def http_problem(exc: HTTPException) -> Response:
    """A werkzeug HTTP error (404, 405 with its Allow header, 413...) as a problem."""
    headers = {name: value for name, value in exc.get_headers() if name.lower() != "content-type"}
    return problem(exc.code or 500, exc.name, exc.description, headers=headers)


def json_body() -> Any:
    """The request's JSON body, or InvalidRequest: not JSON, nested too deeply, or holding unstorable text."""
    try:
        body = json.loads(request.get_data())
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidRequest({"body": "must be a JSON document"}) from exc
    except RecursionError as exc:
        raise InvalidRequest({"body": "is nested too deeply"}) from exc
    if too_deep(body):
        raise InvalidRequest({"body": f"is nested too deeply (more than {MAX_NESTING} levels)"})
    unstorable = unstorable_text(body)
    if unstorable:
        where, why = unstorable
        raise InvalidRequest({where if where != "value" else "body": why})
    return body


def _refuse_unstorable_parameters() -> None:
    """Query and path parameters with a NUL byte or an unpaired surrogate never reach a handler."""
    problems = {}
    for name, value in [*request.args.items(multi=True), *(request.view_args or {}).items()]:
        if text_problem(name):
            problems["query"] = f"a parameter name {text_problem(name)}"
        elif isinstance(value, str) and text_problem(value):
            problems[name] = str(text_problem(value))
    if problems:
        raise InvalidRequest(problems)


def install(app: Flask) -> None:
    """Problem answers for every error the app can raise, and the checks that come before any handler.

    functions-framework routes into the app through its own Flask app, which answers a path it cannot
    route (a newline in it) on its own: main.py gives that app `http_problem` too.
    """
    app.config["MAX_CONTENT_LENGTH"] = MAX_REQUEST_BYTES
    app.before_request(_refuse_unstorable_parameters)

    @app.errorhandler(InvalidRequest)
    def invalid(exc: InvalidRequest):
        log.info("invalid request", extra={"path": request.path, "fields": sorted(exc.problems)})
        return problem(400, "Invalid request", "One or more fields are invalid; see problems.",
                       problems=exc.problems)

    @app.errorhandler(Conflict)
    def conflict(exc: Conflict):
        log.info("request conflicts with stored state", extra={"path": request.path, "field": exc.field})
        return problem(409, "Conflict", exc.detail, problems={exc.field: exc.detail})

    @app.errorhandler(DatabaseError)
    def database_error(exc: DatabaseError):
        if not is_data_error(exc):
            return unexpected(exc)
        # A backstop: every field is range-checked before it reaches a statement.
        log.warning("database refused a value", extra={"path": request.path, "sqlstate": sqlstate(exc)})
        return problem(400, "Invalid request", "A value is out of range for its field.",
                       problems={"request": "a value is out of range for its field"})

    @app.errorhandler(RetryableError)
    def unavailable(exc: RetryableError):
        log.warning("dependency unavailable", extra={"path": request.path, "error_type": type(exc).__name__})
        return problem(503, "Service Unavailable", "A dependency is unavailable; retry shortly.",
                       headers={"Retry-After": "5"})

    app.register_error_handler(HTTPException, http_problem)

    @app.errorhandler(Exception)
    def unexpected(exc: Exception):
        # The traceback's frames say where; the exception's message may quote values, so it is left out.
        log.error("unhandled error", extra={"path": request.path, "method": request.method,
                                            "error_type": type(exc).__name__,
                                            "where": traceback.format_tb(exc.__traceback__)[-3:]})
        return problem(500, "Internal Server Error", "The error was logged.")
