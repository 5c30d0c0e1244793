"""The baseline: a bare functions-framework CloudEvent function that does nothing."""

import functions_framework


@functions_framework.cloud_event
def hello(cloud_event) -> None:
    """Accept the event."""
