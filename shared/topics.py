"""The topics the code publishes to: the one home of their names in Python.

Each constant is used where a message is staged or published, and nowhere else, so the constants a
function's code uses are the topics it publishes to: tests/unit/test_settings_manifest.py holds that
set equal to the function's `publishes` in shared/topology.yaml (which also declares the topics that
only Cloud Scheduler publishes, and the dead-letter topics).
"""

SETTLEMENT_EVENTS = "settlement.events.v1"    # relay: one event per escrow contract log
ESCROW_CHANGES = "settlement.escrows.v1"      # settle: an escrow's state changed
USERS_REGISTERED = "users.registered.v1"      # api: a user registered
COMPLIANCE_REVIEWS = "compliance.reviews.v1"  # api: a reviewer decided a REVIEW hit
MARKET_PRICES = "market.prices.v1"            # fetch-price: a checked price
MARGIN_EVENTS = "risk.margin-events.v1"       # assess-margin: a position changed tier, or an alert is void
COMPLIANCE_RESULTS = "compliance.results.v1"  # screening: a user's decision
RESCREEN_REQUESTS = "compliance.rescreen.v1"  # refresh-sanctions: rescreen one shard of users
