"""Read models of the notification log (see docs/projections.md).

- ``engine``: reading the log, runners and their supervision, rebuild and swap, positions;
- ``views``: the board and its cards, status intervals, tool calls, timeline, time travel;
- ``audit``: the hash chain, export, format, offline verify (standard library only).
"""
