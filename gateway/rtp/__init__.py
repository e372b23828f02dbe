"""Our RTP engine for SIP and H.323 legs: sans-IO sessions, one per media line (audio, main video,
content; packets in, events and packets out), RFC 4733 DTMF, SRTP, and the RtpLeg that carries a
participant's lines over UDP. `aiortc_glue` is the one module that touches aiortc, for this package
and for webrtc/."""
