"""The platform's own package: every Cloud Function ships with it.

Layout (dependencies point downward only):

    functions/<name>/main.py      thin entry points
      -> shared/<domain>/         domain services (relay, settlement, ...)
        -> shared/{db,pubsub,chain,messaging}   adapters
          -> third-party libraries
"""
