"""SIP legs: our own user agent core (sans-IO) and asyncio transports, SDP offer/answer, and the SIP
call's life from INVITE to BYE on our own RTP engine; the call flow it shares with the other
protocols (admission, voice menu, prompts, phone keys, endings) is gateway.calls, and endings.py
says those endings in SIP's terms."""
