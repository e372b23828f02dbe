"""Media processing free of protocol code: audio codecs, jitter buffer, the mixer, video routing."""
