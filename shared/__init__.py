"""The platform's own package. Two kinds of code live here, and only the first ships:

Runtime (in a function's zip when its main.py imports it; shared/deploy/package.py follows the imports):

    functions/<name>/main.py      thin entry points: settings parts, a service, a consumer
      -> shared/<domain>/         relay, settlement, identity, pricing, risk, notify, compliance,
                                  reconcile, api: services, tables.py, settings.py
        -> shared/{db,pubsub,chain,messaging,events,envelope,topics,settings}   adapters and contracts
          -> third-party libraries

Tooling (never imported by a function, so never shipped; tests/unit/test_packaging.py checks):

    shared/stack/        the local stack: PostgreSQL, the Pub/Sub emulator, anvil, vendor servers
    shared/deploy/       packaging, the migration runner, database bootstrap, dead-letter replay and
                         the provider-schema tool, for Cloud Build and operators
    shared/migrations/   Alembic migrations (run by the deploy, not by functions)
    shared/ops/          operator CLIs (trace)
    shared/chain/contracts, compile.mjs   Solidity sources (the functions read the compiled artifacts)

Dependencies point downward only.
"""
