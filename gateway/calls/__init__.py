"""The call flow every protocol shares (SIP, browsers, later H.323), free of protocol code.

admission: who may come in (room, PIN and its guard, lock, lobby, opening hours, trust, room size,
overload), as neutral outcomes. menu: the voice menu before the meeting, sans-IO. prompts: what
callers hear. keys: phone keys in the meeting and the prompts that answer room events. lobby: the
wait in a room's lobby. endings: why a call ended, as neutral codes each protocol maps to its own
terms (a SIP status and Reason, a WebSocket `ended` message, later a Q.931 cause).
"""
