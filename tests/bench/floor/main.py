"""The cold-start floor of a function that writes and publishes, with none of the platform's logic.

Its first request opens a database connection (pg8000, as the functions' pool does), runs one statement
and has one message confirmed through the platform's own leanest publish path (shared/pubsub.py, a bare
gRPC channel). Every function whose first request writes and publishes pays at least this; what a
function takes beyond it is the platform's own cost (its imports, settings, statements and logic).
"""

import os

import functions_framework
import pg8000.native

from shared.pubsub import OutgoingMessage, publish_all

CONNECTION: list[pg8000.native.Connection] = []


@functions_framework.cloud_event
def floor(cloud_event) -> None:
    """Connect on the first request, run one statement, have one message confirmed."""
    if not CONNECTION:
        # Without asking for TLS, as the functions' pool connects to a server on loopback (shared.db.tls_request).
        CONNECTION.append(pg8000.native.Connection(
            os.environ["DB_USER"], host=os.environ["DB_HOST"], port=int(os.environ["DB_PORT"]),
            database=os.environ["DB_NAME"], ssl_context=False))
    CONNECTION[0].run("SELECT 1")
    publish_all(os.environ["GCP_PROJECT"], [OutgoingMessage(os.environ["FLOOR_TOPIC"], b"floor", {})], 10)
