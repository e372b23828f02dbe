"""Our RTP engine for SIP and H.323 legs: sans-IO sessions (packets in, events and packets out),
RFC 4733 DTMF, SRTP; a thin asyncio UDP adapter comes with the SIP leg."""
