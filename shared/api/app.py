"""The API's Flask app; functions/api dispatches every request into it."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import NotFound

from shared.api.compliance_queries import (
    compliance_history,
    compliance_status,
    refuse_own_review,
    request_review,
    reviewing_caller,
    validate_review,
)
from shared.api.escrow_queries import find_escrows, get_escrow, parse_escrow_filter
from shared.api.notification_queries import notification_history
from shared.api.risk_queries import user_portfolio
from shared.api.settings import ApiSettings
from shared.db import get_engine, transaction
from shared.identity import SCHEMA as IDENTITY_SCHEMA
from shared.identity.service import get_user, register_user
from shared.identity.validation import validate_registration
from shared.messaging import outbox
from shared.problems import install as install_problems
from shared.problems import json_body, problem
from shared.settings import Settings

log = logging.getLogger(__name__)
OPENAPI_PATH = Path(__file__).with_name("openapi.yaml")


def create_app(settings: Settings) -> Flask:
    """The API bound to one set of settings."""
    app = Flask("api")
    install_problems(app)
    reviewers = settings.part(ApiSettings).compliance_reviewers

    def engine():
        return get_engine(settings.database)

    def not_found():
        raise NotFound(f"Nothing at {request.path}.")

    @app.post("/users")
    def post_user():
        registration = validate_registration(json_body(), datetime.now(UTC).date())
        with transaction(engine()) as conn:
            user = register_user(conn, registration)
        # The user is stored either way; an unconfirmed publish stays in the outbox for the next call.
        outbox.publish_pending(engine(), IDENTITY_SCHEMA, settings.project_id, settings.publish_timeout_seconds)
        log.info("user registered", extra={"user_id": user["user_id"]})
        return jsonify(user), 201

    @app.get("/users/<user_id>")
    def read_user(user_id: str):
        with transaction(engine()) as conn:
            user = get_user(conn, user_id)
            if user:
                user["compliance_status"] = compliance_status(conn, user_id)
        return (jsonify(user), 200) if user else not_found()

    @app.get("/users/<user_id>/portfolio")
    def read_portfolio(user_id: str):
        with transaction(engine()) as conn:
            user = get_user(conn, user_id)
            portfolio = user_portfolio(conn, user) if user else None
        return (jsonify(portfolio), 200) if portfolio else not_found()

    @app.get("/users/<user_id>/notifications")
    def read_notifications(user_id: str):
        with transaction(engine()) as conn:
            user = get_user(conn, user_id)
            history = notification_history(conn, user_id) if user else None
        return (jsonify(user_id=user_id, notifications=history), 200) if user else not_found()

    @app.get("/users/<user_id>/compliance")
    def read_compliance(user_id: str):
        with transaction(engine()) as conn:
            user = get_user(conn, user_id)
            history = compliance_history(conn, user_id) if user else None
        return (jsonify(history), 200) if history else not_found()

    @app.post("/users/<user_id>/compliance/reviews")
    def post_review(user_id: str):
        reviewer = reviewing_caller(request.headers, reviewers, user_id)
        review = validate_review(json_body(), reviewer)
        with transaction(engine()) as conn:
            user = get_user(conn, user_id)
            if user is None:
                return not_found()
            refuse_own_review(user, reviewer)
            accepted, refusal = request_review(conn, user_id, review, reviewer)
        if accepted is None:
            log.info("review refused", extra={"user_id": user_id, "hit_id": review["hit_id"], "reason": refusal,
                                              "caller": reviewer})
            return problem(409, "Conflict", refusal)
        outbox.publish_pending(engine(), IDENTITY_SCHEMA, settings.project_id, settings.publish_timeout_seconds)
        log.info("review accepted", extra={"user_id": user_id, "review_id": accepted["review_id"], "caller": reviewer})
        return jsonify(accepted), 202

    @app.get("/escrows")
    def list_escrows():
        query = parse_escrow_filter(request.args)
        with transaction(engine()) as conn:
            return jsonify(find_escrows(conn, query))

    @app.get("/escrows/<id>")
    def read_escrow(id: str):  # noqa: A002 - the documented path parameter's name
        with transaction(engine()) as conn:
            escrow = get_escrow(conn, id)
        return (jsonify(escrow), 200) if escrow else not_found()

    @app.get("/openapi.yaml")
    def openapi():
        return Response(OPENAPI_PATH.read_text(), mimetype="application/yaml")

    return app
