"""Test fixtures: real PostgreSQL, a real Kafka-protocol broker, and every component as a real HTTP
server. Loaded as a pytest plugin (`-p laoke.testing.plugin`)."""
