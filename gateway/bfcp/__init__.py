"""BFCP, the Binary Floor Control Protocol (RFC 8855): how SIP room systems ask for the content
floor. Sans-IO: message.py reads and writes messages."""
