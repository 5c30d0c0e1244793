"""callbacks: the public, signature-checked endpoint for SendGrid and Twilio delivery status callbacks."""

import functions_framework
from werkzeug.exceptions import HTTPException

from shared import startup  # first of the platform's modules: see shared/startup.py
from shared.logs import configure_logging
from shared.notify.callbacks import create_app
from shared.notify.settings import CallbackSettings
from shared.problems import http_problem
from shared.settings import Settings

configure_logging()
SETTINGS = Settings.from_env(parts=[CallbackSettings])
APP = create_app(SETTINGS)
# Errors functions-framework's own app answers before the request reaches APP, as problems too.
functions_framework.errorhandler(HTTPException)(http_problem)
startup.loaded()


@functions_framework.http
def callbacks(request):
    """Dispatch into the Flask app: /sendgrid/events, /twilio/status."""
    with APP.request_context(request.environ):
        return APP.full_dispatch_request()
