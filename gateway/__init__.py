"""Open-source meeting gateway: browsers, SIP and H.323 room systems and phones in one meeting."""

__version__ = "0.1.0"
