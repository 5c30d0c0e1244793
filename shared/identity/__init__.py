"""identity: registered users, owned by the api function."""

# The database schema this domain owns (its role writes only here).
SCHEMA = "identity"
