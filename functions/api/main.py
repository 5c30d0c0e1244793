"""api: user registration and escrow queries over HTTPS."""

import functions_framework
from werkzeug.exceptions import HTTPException

from shared import startup  # first of the platform's modules: see shared/startup.py
from shared.api.app import create_app
from shared.api.settings import ApiSettings
from shared.logs import configure_logging
from shared.problems import http_problem
from shared.settings import Settings

configure_logging()
SETTINGS = Settings.from_env(parts=[ApiSettings])
APP = create_app(SETTINGS)
# Errors functions-framework's own app answers before the request reaches APP, as problems too.
functions_framework.errorhandler(HTTPException)(http_problem)
startup.loaded()


@functions_framework.http
def api(request):
    """Route the request through the API's Flask app."""
    with APP.request_context(request.environ):
        return APP.full_dispatch_request()
