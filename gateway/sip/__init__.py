"""SIP legs: signalling through pjsua2, our own SDP and RTP (issue 3; the SDP core comes first)."""
