"""Browser legs: the meeting page and its WebSocket signalling (routes for gateway/http.py), one
aiortc peer per browser, and the page's static files."""
