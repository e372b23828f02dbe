"""SIP legs: our own user agent core (sans-IO) and asyncio transports, SDP offer/answer, the voice
menu and prompts, and the SIP call's life from INVITE to BYE on our own RTP engine."""
