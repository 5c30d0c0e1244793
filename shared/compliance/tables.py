"""The compliance schema: sanctions list snapshots, screened subjects, screenings, hits and reviews."""

from sqlalchemy import (
    BigInteger,
    Column,
    Computed,
    Date,
    DateTime,
    ForeignKey,
    Integer,
    MetaData,
    Numeric,
    Table,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

from shared.compliance import RESCREEN_KEY_SQL, SCHEMA

SNAPSHOT_ID = "compliance.list_snapshots.snapshot_id"
metadata = MetaData(schema=SCHEMA)

# One loaded set of OFAC files; files whose `digest` equals the latest snapshot's are not loaded again.
list_snapshots = Table(
    "list_snapshots",
    metadata,
    Column("snapshot_id", Integer, primary_key=True),
    Column("digest", Text, nullable=False),
    Column("source", Text, nullable=False),
    # When the publisher last changed the SDN file (its Last-Modified), if it said.
    Column("published_at", DateTime(timezone=True)),
    Column("loaded_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("counts", JSONB, nullable=False),
)

sdn_entries = Table(
    "sdn_entries",
    metadata,
    Column("snapshot_id", Integer, ForeignKey(SNAPSHOT_ID), primary_key=True),
    Column("ent_num", Integer, primary_key=True),
    Column("name", Text, nullable=False),
    Column("sdn_type", Text),
    Column("programs", Text),
    Column("title", Text),
    Column("remarks", Text),
)

sdn_aliases = Table(
    "sdn_aliases",
    metadata,
    Column("snapshot_id", Integer, ForeignKey(SNAPSHOT_ID), primary_key=True),
    Column("ent_num", Integer, primary_key=True),
    Column("alt_num", Integer, primary_key=True),
    Column("alt_type", Text),
    Column("name", Text, nullable=False),
    Column("remarks", Text),
)

sdn_addresses = Table(
    "sdn_addresses",
    metadata,
    Column("snapshot_id", Integer, ForeignKey(SNAPSHOT_ID), primary_key=True),
    Column("ent_num", Integer, primary_key=True),
    Column("add_num", Integer, primary_key=True),
    Column("address", Text),
    Column("city", Text),
    Column("country", Text),
    Column("remarks", Text),
)

# Sanctioned Ethereum addresses, EIP-55 checksummed.
listed_wallets = Table(
    "listed_wallets",
    metadata,
    Column("snapshot_id", Integer, ForeignKey(SNAPSHOT_ID), primary_key=True),
    Column("address", Text, primary_key=True),
    # The SDN entry whose remarks list it; NULL when only the address list has it.
    Column("ent_num", Integer),
)

# The name-blocking index of a snapshot (shared/compliance/names.py: NameIndex), stored so that a
# registration's screening reads the part of it one search needs instead of building it all. Derived from
# the snapshot's names; read only when built by the rules this code runs (`rules_version`), rebuilt by
# refresh-sanctions when not; kept for the latest two snapshots. The tables below are keyed by what is
# looked up first: keyed by snapshot first, a snapshot just loaded (not yet analysed, so estimated at a
# row) was read by scanning all of it, 50 ms a registration instead of 2 ms.
name_indexes = Table(
    "name_indexes",
    metadata,
    Column("snapshot_id", Integer, ForeignKey(SNAPSHOT_ID), primary_key=True),
    Column("rules_version", Text, nullable=False),
    Column("names", Integer, nullable=False),
    Column("keys", Integer, nullable=False),
    Column("built_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
NAME_INDEX_ID = "compliance.name_indexes.snapshot_id"

# The screened names (individuals' names and aliases) by their position in the index (ent_num order,
# primary names first), with what a hit's evidence says of their entry.
name_index_names = Table(
    "name_index_names",
    metadata,
    Column("position", Integer, primary_key=True),
    Column("snapshot_id", Integer, ForeignKey(NAME_INDEX_ID, ondelete="CASCADE"), primary_key=True),
    Column("ent_num", Integer, nullable=False),
    Column("alt_num", Integer),
    Column("name", Text, nullable=False),
    Column("entry_name", Text, nullable=False),
    Column("programs", Text),
)

# A listed token -> the positions of the names holding it.
name_index_tokens = Table(
    "name_index_tokens",
    metadata,
    Column("token", Text, primary_key=True),
    Column("snapshot_id", Integer, ForeignKey(NAME_INDEX_ID, ondelete="CASCADE"), primary_key=True),
    Column("positions", ARRAY(Integer), nullable=False),
)

# A blocking key -> the listed tokens that have it.
name_index_keys = Table(
    "name_index_keys",
    metadata,
    Column("key", Text, primary_key=True),
    Column("snapshot_id", Integer, ForeignKey(NAME_INDEX_ID, ondelete="CASCADE"), primary_key=True),
    Column("tokens", ARRAY(Text), nullable=False),
)

# Files that could not be loaded, and why (the refresh acknowledges them; nothing half-loaded).
list_load_failures = Table(
    "list_load_failures",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("digest", Text),
    Column("reason", Text, nullable=False),
    Column("failed_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

# The identity data screening needs, and the user's current status. No email, phone or document number.
subjects = Table(
    "subjects",
    metadata,
    Column("user_id", Text, primary_key=True),
    Column("registered_event_id", Text, nullable=False),
    Column("correlation_id", Text, nullable=False),
    Column("name", Text),
    Column("date_of_birth", Date),
    Column("country", Text),
    Column("wallet_addresses", JSONB, nullable=False),
    # type, issuing_country, expires_on
    Column("identity_document", JSONB),
    Column("decision", Text, nullable=False),
    Column("latest_screening_id", BigInteger, nullable=False),
    Column("last_snapshot_id", Integer, nullable=False),
    # One more for every published result: settle ignores a result not newer than what it has.
    Column("result_sequence", Integer, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # 0..65535 from the user id's MD5: rescreening shards are ranges of it (uniform whatever the ids).
    Column("rescreen_key", Integer, Computed(RESCREEN_KEY_SQL, persisted=True), nullable=False),
)

# One fan-out of a rescreening: refresh-sanctions published `shards` shard requests for the users behind
# `snapshot_id`; a later generation re-publishes for whoever is still behind (a shard held as a dead letter).
rescreen_plans = Table(
    "rescreen_plans",
    metadata,
    Column("snapshot_id", Integer, primary_key=True),
    Column("generation", Integer, primary_key=True),
    Column("shards", Integer, nullable=False),
    Column("users_behind", Integer, nullable=False),
    Column("planned_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

# Every screening run: the history. Immutable once written.
screenings = Table(
    "screenings",
    metadata,
    Column("screening_id", BigInteger, primary_key=True),
    Column("user_id", Text, nullable=False),
    Column("snapshot_id", Integer, ForeignKey(SNAPSHOT_ID), nullable=False),
    # registration | rescreen
    Column("trigger", Text, nullable=False),
    Column("cause_event_id", Text, nullable=False),
    Column("decision", Text, nullable=False),
    Column("score", Integer, nullable=False),
    Column("reasons", JSONB, nullable=False),
    Column("screened_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # One run per user, snapshot and cause: a redelivered cause does not screen twice.
    UniqueConstraint("user_id", "snapshot_id", "cause_event_id", name="screenings_once"),
)

hits = Table(
    "hits",
    metadata,
    Column("hit_id", BigInteger, primary_key=True),
    Column("screening_id", BigInteger, ForeignKey("compliance.screenings.screening_id"), nullable=False),
    Column("user_id", Text, nullable=False),
    Column("check", Text, nullable=False),
    Column("code", Text, nullable=False),
    # What the hit does to the decision on its own: APPROVED (evidence only), REVIEW or REJECTED.
    Column("effect", Text, nullable=False),
    Column("score", Numeric),
    Column("list_entry", Integer),
    Column("evidence", JSONB, nullable=False),
    # For REVIEW hits: pending, then confirmed or dismissed (by a review, possibly an earlier one).
    Column("review_status", Text),
    Column("review_id", Text),
)

# Reviewers' decisions on REVIEW hits: who, when, what, and whether it was applied.
reviews = Table(
    "reviews",
    metadata,
    Column("review_id", Text, primary_key=True),
    Column("hit_id", BigInteger, ForeignKey("compliance.hits.hit_id"), nullable=False),
    Column("user_id", Text, nullable=False),
    Column("action", Text, nullable=False),
    Column("reviewer", Text, nullable=False),
    Column("note", Text),
    Column("requested_at", DateTime(timezone=True), nullable=False),
    Column("applied_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # applied | ignored (the hit was no longer pending)
    Column("outcome", Text, nullable=False),
    Column("reason", Text),
)
