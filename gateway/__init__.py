"""The gateway: the single public entry — shops, API keys, authentication, rate limits, routing."""
