"""The HTTP API v1: JSON routes over the services (R2-R5)."""
