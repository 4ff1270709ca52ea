"""What the HTTP API and the web channels share: error -> status mapping and problem bodies
(``problems``), the caller's language (``language``), the client's address (``client``), rate
limits (``rate_limits``) and idempotent requests (``idempotency``). Nothing here knows a route."""
