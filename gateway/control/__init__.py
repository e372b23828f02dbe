"""Control plane: the admin REST API (and, later, the MQTT bridge and persistence)."""
