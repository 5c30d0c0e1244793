"""Applies escrow contract events from settlement.events.v1 to the escrow records.

Events are applied in chain order per escrow: one at or before the escrow's last applied position
changes nothing. An event for an escrow not created yet, or one that skips a state still to come,
waits (AwaitingPrerequisite: retried, permanent after the grace period). A `removed` event undoes
what its orphaned log did, together with every later transition of that escrow.
"""

from __future__ import annotations

import functools
import logging
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from shared import topics
from shared.db import Connection, execute_autocommitted, sql
from shared.envelope import Envelope
from shared.errors import AwaitingPrerequisite, IllegalTransition
from shared.events import (
    COMPLIANCE_SCREENED,
    ESCROW_STATE_CHANGED,
    PAYLOAD_MODELS,
    EscrowCreatedV1,
    EscrowLog,
    usd_as_stored,
)
from shared.messaging.consumer import Consumer, OneStatement, Outgoing
from shared.settings import Settings
from shared.settlement import SCHEMA
from shared.settlement.holds import apply_compliance_result
from shared.settlement.states import (
    TARGET_STATE,
    EscrowState,
    apply_transition,
    fits_between,
    is_reachable,
    state_change_id,
)

log = logging.getLogger(__name__)

# Position of an escrow that has no live transition (voided).
NO_POSITION = (-1, -1)


# In one round trip: whether the event's log was orphaned before it arrived, and the escrow row (all
# nulls when there is none yet), locked for the change.
_ORPHANED_AND_ESCROW = sql(
    f"SELECT EXISTS (SELECT 1 FROM {SCHEMA}.orphaned_logs WHERE dedupe_key = :dedupe_key) AS orphaned, escrow.* "
    f"FROM (SELECT) AS one LEFT JOIN LATERAL (SELECT * FROM {SCHEMA}.escrows WHERE chain_id = :chain_id "
    "AND contract = :contract AND escrow_id = :escrow_id FOR UPDATE) AS escrow ON true")



@functools.cache
def _insert_escrow(columns: tuple[str, ...]):
    """The escrow row with these columns (the code's own names), as written."""
    return sql(f"INSERT INTO {SCHEMA}.escrows ({', '.join(columns)}, recorded_at) "
               f"VALUES ({', '.join(':' + column for column in columns)}, now()) RETURNING *")


@functools.cache
def _update_escrow(columns: tuple[str, ...]):
    """The escrow keyed by :key_chain_id, :key_contract and :key_escrow_id, with these columns set; as written."""
    return sql(f"UPDATE {SCHEMA}.escrows SET {', '.join(f'{column} = :{column}' for column in columns)}, "
               "recorded_at = now() WHERE chain_id = :key_chain_id AND contract = :key_contract "
               "AND escrow_id = :key_escrow_id RETURNING *")


def _update_escrow_row(conn: Connection, key: dict, columns: dict) -> Any:
    return conn.execute(_update_escrow(tuple(columns)), {**_key_parameters(key), **columns}).mappings().one()


# A transition's columns, in the order the statements below take them.
_TRANSITION_COLUMNS = ("chain_id", "contract", "escrow_id", "sequence", "from_state", "to_state", "event_id",
                       "dedupe_key", "block_number", "log_index", "occurred_at")
_RECORD_TRANSITION = sql(
    f"INSERT INTO {SCHEMA}.transitions ({', '.join(_TRANSITION_COLUMNS)}) "
    f"VALUES ({', '.join(':' + column for column in _TRANSITION_COLUMNS)}) ON CONFLICT (dedupe_key) DO NOTHING")
_LATE_EVENT_ROW = ("chain_id", "contract", "escrow_id", "dedupe_key", "event_id", "event_type", "block_number",
                   "log_index", "from_state", "to_state", "occurred_at")
_RECORD_LATE_EVENT = sql(
    f"INSERT INTO {SCHEMA}.late_events ({', '.join(_LATE_EVENT_ROW)}) "
    f"VALUES ({', '.join(':' + column for column in _LATE_EVENT_ROW)}) ON CONFLICT (dedupe_key) DO NOTHING")
_RECORD_ORPHANED = sql(f"INSERT INTO {SCHEMA}.orphaned_logs (dedupe_key, removal_event_id) "
                       "VALUES (:dedupe_key, :removal_event_id) ON CONFLICT (dedupe_key) DO NOTHING")
_LIVE_TRANSITION = sql(f"SELECT * FROM {SCHEMA}.transitions WHERE dedupe_key = :dedupe_key AND reverted_at IS NULL")
_REVERT_LATE_EVENT = sql(f"UPDATE {SCHEMA}.late_events SET reverted_at = now() "
                         "WHERE dedupe_key = :dedupe_key AND reverted_at IS NULL")
_ESCROW_FOR_UPDATE = sql(f"SELECT * FROM {SCHEMA}.escrows WHERE chain_id = :chain_id AND contract = :contract "
                         "AND escrow_id = :escrow_id FOR UPDATE")
_REVERT_TRANSITIONS_FROM = sql(
    f"UPDATE {SCHEMA}.transitions SET reverted_at = now() WHERE chain_id = :chain_id AND contract = :contract "
    "AND escrow_id = :escrow_id AND sequence >= :sequence AND reverted_at IS NULL")
_LAST_LIVE_STEP = sql(
    f"SELECT block_number, log_index FROM {SCHEMA}.transitions WHERE chain_id = :chain_id AND contract = :contract "
    "AND escrow_id = :escrow_id AND reverted_at IS NULL AND reverts_event_id IS NULL ORDER BY sequence DESC LIMIT 1")
_RECORD_UNDO = sql(
    f"INSERT INTO {SCHEMA}.transitions ({', '.join(_TRANSITION_COLUMNS)}, reverts_event_id) "
    f"VALUES ({', '.join(':' + column for column in _TRANSITION_COLUMNS)}, :reverts_event_id)")

# For an event at or before an escrow's last change: the escrow's history around the event's chain position,
# its live forward steps (reverted ones and a reorganisation's undo rows left out) and the late events
# recorded so far (but the event's own, on a redelivery): the nearest before and after it, and whether
# another log holds its position (two logs of one escrow at one position are from two forks).
_STEPS_AROUND = sql(
    f"WITH history AS (SELECT block_number, log_index, to_state FROM {SCHEMA}.transitions "
    "WHERE chain_id = :chain_id AND contract = :contract AND escrow_id = :escrow_id AND reverted_at IS NULL "
    f"AND reverts_event_id IS NULL UNION ALL SELECT block_number, log_index, to_state FROM {SCHEMA}.late_events "
    "WHERE chain_id = :chain_id AND contract = :contract AND escrow_id = :escrow_id AND reverted_at IS NULL "
    "AND dedupe_key <> :dedupe_key) "
    "SELECT (SELECT to_state FROM history WHERE (block_number, log_index) < (:block_number, :log_index) "
    "ORDER BY block_number DESC, log_index DESC LIMIT 1) AS before, "
    "(SELECT to_state FROM history WHERE (block_number, log_index) > (:block_number, :log_index) "
    "ORDER BY block_number, log_index LIMIT 1) AS after, "
    "EXISTS (SELECT 1 FROM history WHERE (block_number, log_index) = (:block_number, :log_index)) AS occupied")


class Settlement:
    """settle's service: the escrow records and their state machine."""

    def handle(self, conn: Connection, envelope: Envelope) -> Outgoing:
        """The consumer's handler: contract events from settlement.events.v1, compliance decisions from
        compliance.results.v1."""
        if envelope.event_type == COMPLIANCE_SCREENED:
            return apply_compliance_result(conn, envelope)
        return apply_settlement_event(conn, envelope)


def settle_consumer(settings: Settings, name: str = "settle") -> Consumer:
    """settle's consumer as the function runs it: contract events and compliance results, each applied once,
    the common contract events in one statement (`apply_at_once`); replayable for the reconciler."""
    return Consumer(name, SCHEMA, settings, Settlement().handle, replayable=True, at_once=apply_at_once)


def apply_settlement_event(conn: Connection, envelope: Envelope) -> Outgoing:
    """Apply one event from settlement.events.v1 and return the state changes to publish."""
    chain_log = _chain_log(envelope)
    if chain_log.removed:
        return _undo_orphaned_log(conn, envelope)
    key = _escrow_key(chain_log)
    found = conn.execute(_ORPHANED_AND_ESCROW, {**key, "dedupe_key": envelope.dedupe_key}).mappings().one()
    if found["orphaned"]:
        log.info("log was orphaned before it arrived; ignored", extra={"event_id": envelope.event_id})
        return []
    escrow = found if found["chain_id"] is not None else None
    target = TARGET_STATE[envelope.event_type]
    current = EscrowState(escrow["state"]) if escrow else None
    if (target is EscrowState.CREATED and escrow and current is not EscrowState.VOIDED
            and escrow["created_event_id"] != envelope.event_id):
        # After a reorganisation another creation log reuses the id; the removal of the first one must
        # apply before it, or the new escrow would be taken for a repeat and lost.
        raise AwaitingPrerequisite(f"escrow {chain_log.escrow_id} was created by "
                                   f"{escrow['created_event_id']}; waiting for its removal")
    position = (chain_log.block_number, chain_log.log_index)
    if escrow and current is not EscrowState.VOIDED and position <= (escrow["last_block"], escrow["last_log_index"]):
        _record_if_late(conn, key, envelope, position, target)
        return []
    try:
        new_state = apply_transition(current, target, event_id=envelope.event_id)
    except IllegalTransition:
        if is_reachable(current, target):
            raise AwaitingPrerequisite(
                f"escrow {chain_log.escrow_id} is {current.value if current else 'unknown'}; "
                f"{envelope.event_type} must wait for the transitions before it"
            ) from None
        raise
    change = _change(envelope, new_state, (escrow["sequence"] if escrow else 0) + 1, position)
    if target is EscrowState.CREATED:
        updated = _write_terms(conn, key, envelope, escrow, change)
    else:
        updated = _update_escrow_row(conn, key, change)
    # A replay (the reconciler restoring a lost escrow row) finds its transition still recorded.
    conn.execute(_RECORD_TRANSITION, _transition(key, envelope, current, change))
    return [_state_changed(updated, envelope, current, reverted=False)]


# settle's one-statement path (apply_at_once). The escrow's columns, in the order the statements below take
# their values (and the transition's: _TRANSITION_COLUMNS).
_ESCROW_COLUMNS = ("chain_id", "contract", "escrow_id", "depositor", "beneficiary", "asset", "amount",
                   "obligation_usd", "deadline", "created_event_id", "created_block", "created_tx", "created_at",
                   "state", "sequence", "last_block", "last_log_index", "updated_at")
_NOT_ORPHANED = f"NOT EXISTS (SELECT 1 FROM {SCHEMA}.orphaned_logs WHERE dedupe_key = %s)"
_RECORD_TRANSITION_OF_ESCROW = (
    f"transition AS (INSERT INTO {SCHEMA}.transitions ({', '.join(_TRANSITION_COLUMNS)}) "
    f"SELECT {', '.join(['%s'] * len(_TRANSITION_COLUMNS))} FROM escrow ON CONFLICT (dedupe_key) DO NOTHING), "
    "effect AS (SELECT 1 FROM escrow)")
# A new escrow: written unless its id is taken (any row: a repeat, a reused id, a voided escrow) or its log
# was orphaned before it arrived.
_CREATE_AT_ONCE = (
    f"escrow AS (INSERT INTO {SCHEMA}.escrows ({', '.join(_ESCROW_COLUMNS)}, recorded_at) "
    f"SELECT {', '.join(['%s'] * len(_ESCROW_COLUMNS))}, now() WHERE {_NOT_ORPHANED} "
    "ON CONFLICT (chain_id, contract, escrow_id) DO NOTHING RETURNING 1), " + _RECORD_TRANSITION_OF_ESCROW)
# The next step of an escrow read just before: written only while the escrow is as read (its sequence and
# state: every change of the row moves its sequence), and its log not orphaned.
_STEP_AT_ONCE = (
    f"escrow AS (UPDATE {SCHEMA}.escrows SET state = %s, sequence = %s, last_block = %s, last_log_index = %s, "
    "updated_at = %s, recorded_at = now() WHERE chain_id = %s AND contract = %s AND escrow_id = %s "
    f"AND sequence = %s AND state = %s AND {_NOT_ORPHANED} RETURNING 1), " + _RECORD_TRANSITION_OF_ESCROW)
_READ_ESCROW = f"SELECT * FROM {SCHEMA}.escrows WHERE chain_id = %s AND contract = %s AND escrow_id = %s"


def apply_at_once(conn: Connection, envelope: Envelope) -> OneStatement | None:
    """settle's one-statement path (shared/messaging/consumer.py), for the common case: a new escrow's
    creation, or the next forward step of an escrow as read just now. It decides with the same state
    machine and writes the same rows and the same state change as `apply_settlement_event`; everything
    else (a removal, a compliance result, an event at or before the escrow's last change, one that must
    wait, a reused or voided id, an orphaned log) is left to that path, in a transaction: None here, or a
    statement that applies nothing."""
    target = TARGET_STATE.get(envelope.event_type)
    if target is None:
        return None
    chain_log = _chain_log(envelope)
    if chain_log.removed:
        return None
    key = _escrow_key(chain_log)
    position = (chain_log.block_number, chain_log.log_index)
    if target is EscrowState.CREATED:
        change = _change(envelope, EscrowState.CREATED, 1, position)
        escrow = {**key, **_terms(envelope), **change}
        clauses = _CREATE_AT_ONCE
        params: tuple = (*(escrow[column] for column in _ESCROW_COLUMNS), envelope.dedupe_key)
        current = None
    else:
        found = execute_autocommitted(conn, _READ_ESCROW, tuple(key.values()))
        if not found:
            return None
        current = EscrowState(found[0]["state"])
        if current is EscrowState.VOIDED or position <= (found[0]["last_block"], found[0]["last_log_index"]):
            return None
        try:
            new_state = apply_transition(current, target, event_id=envelope.event_id)
        except IllegalTransition:
            return None
        change = _change(envelope, new_state, found[0]["sequence"] + 1, position)
        escrow = {**found[0], **change}
        clauses = _STEP_AT_ONCE
        params = (change["state"], change["sequence"], change["last_block"], change["last_log_index"],
                  change["updated_at"], *key.values(), found[0]["sequence"], current.value, envelope.dedupe_key)
    transition = _transition(key, envelope, current, change)
    return OneStatement(clauses, (*params, *(transition[column] for column in _TRANSITION_COLUMNS)),
                        [_state_changed(escrow, envelope, current, reverted=False)])


def _change(envelope: Envelope, new_state: EscrowState, sequence: int, position: tuple[int, int]) -> dict:
    """The escrow columns an event's transition sets."""
    return {"state": new_state.value, "sequence": sequence, "last_block": position[0],
            "last_log_index": position[1], "updated_at": datetime.fromisoformat(envelope.occurred_at)}


def _transition(key: dict, envelope: Envelope, current: EscrowState | None, change: dict) -> dict:
    """The transition row of an event that made `change`."""
    return {**key, "sequence": change["sequence"], "from_state": current.value if current else None,
            "to_state": change["state"], "event_id": envelope.event_id, "dedupe_key": envelope.dedupe_key,
            "block_number": change["last_block"], "log_index": change["last_log_index"],
            "occurred_at": change["updated_at"]}


def _record_if_late(conn: Connection, key: dict, envelope: Envelope, position: tuple[int, int],
                    target: EscrowState) -> None:
    """An event at or before the escrow's last change: recorded in its history when it fits between what the
    history holds before and after its position (an approval pushed after the refund); otherwise (a replay
    of an applied event, another fork's leftover) nothing to do."""
    found = conn.execute(_STEPS_AROUND, {**key, "dedupe_key": envelope.dedupe_key, "block_number": position[0],
                                         "log_index": position[1]}).one()
    before = EscrowState(found.before) if found.before else None
    after = EscrowState(found.after) if found.after else None
    extra = {"event_id": envelope.event_id, "escrow_id": str(key["escrow_id"])}
    if found.occupied or before is None or not fits_between(before, target, after):
        log.info("event at or before the escrow's last change; nothing to do", extra=extra)
        return
    conn.execute(_RECORD_LATE_EVENT, {
        **key, "dedupe_key": envelope.dedupe_key, "event_id": envelope.event_id, "event_type": envelope.event_type,
        "block_number": position[0], "log_index": position[1], "from_state": before.value,
        "to_state": target.value, "occurred_at": datetime.fromisoformat(envelope.occurred_at)})
    log.info("late event recorded in the escrow's history; its state already reflects it",
             extra={**extra, "from_state": before.value, "to_state": target.value})


def _undo_orphaned_log(conn: Connection, removal: Envelope) -> Outgoing:
    """Undo the transition the orphaned log made, and every later one of the same escrow."""
    removed_log = _chain_log(removal)
    original_key = f"{removal.causation_id}@{removed_log.block_hash}"
    conn.execute(_RECORD_ORPHANED, {"dedupe_key": original_key, "removal_event_id": removal.event_id})
    undone = conn.execute(_LIVE_TRANSITION, {"dedupe_key": original_key}).mappings().first()
    if undone is None:
        # Never applied here (or already undone): remembering it as orphaned is all there is to do, and a
        # late event it made leaves the escrow's history.
        conn.execute(_REVERT_LATE_EVENT, {"dedupe_key": original_key})
        return []
    key = {"chain_id": undone["chain_id"], "contract": undone["contract"], "escrow_id": undone["escrow_id"]}
    escrow = conn.execute(_ESCROW_FOR_UPDATE, key).mappings().one()
    conn.execute(_REVERT_TRANSITIONS_FROM, {**key, "sequence": undone["sequence"]})
    previous = conn.execute(_LAST_LIVE_STEP, key).first()
    restored = EscrowState(undone["from_state"]) if undone["from_state"] else EscrowState.VOIDED
    position = tuple(previous) if previous else NO_POSITION
    sequence = escrow["sequence"] + 1
    updated = _update_escrow_row(conn, key, {"state": restored.value, "sequence": sequence,
                                             "last_block": position[0], "last_log_index": position[1]})
    conn.execute(_RECORD_UNDO, {
        **key, "sequence": sequence, "from_state": escrow["state"], "to_state": restored.value,
        "event_id": removal.event_id, "dedupe_key": removal.dedupe_key, "block_number": removed_log.block_number,
        "log_index": removed_log.log_index, "occurred_at": datetime.fromisoformat(removal.occurred_at),
        "reverts_event_id": undone["event_id"]})
    log.warning("orphaned log undone", extra={"event_id": undone["event_id"], "restored_state": restored.value})
    return [_state_changed(updated, removal, EscrowState(escrow["state"]), reverted=True)]


def _write_terms(conn: Connection, key: dict, envelope: Envelope, existing: Any, change: dict) -> Any:
    """Insert the escrow with its terms and the `change` (or rewrite them when a voided escrow is created
    again), in one statement; returns the row as written."""
    terms = _terms(envelope)
    if existing is None:
        row = {**key, **terms, **change}
        return conn.execute(_insert_escrow(tuple(row)), row).mappings().one()
    return _update_escrow_row(conn, key, {**terms, **change})


def _terms(creation: Envelope) -> dict:
    """The escrow columns an EscrowCreated sets once, as the columns hold them: the obligation rounded to its
    column's 8 places as PostgreSQL rounds (half away from zero), so the state change built from these
    values says what the row says."""
    p = creation.typed(EscrowCreatedV1)
    return {
        "depositor": p.depositor, "beneficiary": p.beneficiary, "asset": p.asset,
        "amount": Decimal(p.amount),
        "obligation_usd": usd_as_stored(p.obligation_usd),
        "deadline": datetime.fromtimestamp(p.deadline, UTC), "created_event_id": creation.event_id,
        "created_block": p.block_number, "created_tx": p.tx_hash,
        "created_at": datetime.fromisoformat(creation.occurred_at),
    }


def _state_changed(escrow: Any, cause: Envelope, previous: EscrowState | None,
                   *, reverted: bool) -> tuple[str, Envelope]:
    """The EscrowStateChanged event for the escrow row as the change left it."""
    cause_log = _chain_log(cause)
    change = Envelope(
        event_id=state_change_id(cause.dedupe_key),
        event_type=ESCROW_STATE_CHANGED,
        schema_version=1,
        occurred_at=cause.occurred_at,
        # The escrow's one correlation id: its creation log's (a reused id after a reorg gets a new one).
        correlation_id=escrow["created_event_id"],
        causation_id=cause.event_id,
        payload={
            "chain_id": escrow["chain_id"],
            "contract": escrow["contract"],
            "escrow_id": str(escrow["escrow_id"]),
            "depositor": escrow["depositor"],
            "beneficiary": escrow["beneficiary"],
            "asset": escrow["asset"],
            "amount": str(escrow["amount"]),
            "obligation_usd": f"{escrow['obligation_usd']:.8f}",
            "deadline": int(escrow["deadline"].timestamp()),
            "state": escrow["state"],
            "previous_state": previous.value if previous else None,
            "sequence": escrow["sequence"],
            "reverted": reverted,
            "block_number": cause_log.block_number,
            "log_index": cause_log.log_index,
        },
    )
    return topics.ESCROW_CHANGES, change


def _chain_log(envelope: Envelope) -> EscrowLog:
    """A relay event's payload as its typed model (its type decides which)."""
    model = PAYLOAD_MODELS[(envelope.event_type, envelope.schema_version)]
    typed: EscrowLog = envelope.typed(model)  # type: ignore[assignment]  # the four chain-log models
    return typed


def _escrow_key(chain_log: EscrowLog) -> dict:
    return {"chain_id": chain_log.chain_id, "contract": chain_log.contract, "escrow_id": Decimal(chain_log.escrow_id)}


def _key_parameters(key: dict) -> dict:
    """The escrow key as _update_escrow's parameters."""
    return {f"key_{column}": value for column, value in key.items()}


