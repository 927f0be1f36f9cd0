"""One module per concern, one handler per command class.

Each module lists its routes (`ROUTES`): the command classes a handler takes, the handler, and
what it needs loaded for a message (`Wants`). `service/routing.py` joins them into the one
table the processor uses, keyed by command class, and refuses to start when a command has no
handler or two.

Handlers are synchronous on purpose: the processor loads (and locks) everything a batch can
touch up front, each handler decides against that in-memory state (a `Refusal` it raises
becomes `command.rejected`, and a handler raises before it changes anything), and the
processor writes the results back in a few batch statements. No handler does I/O of its own,
so a batch of 500 messages costs the same handful of round trips as a batch of one.
"""
