"""The embedded defaults: a private PostgreSQL and a Kafka-compatible broker, plus a supervisor that
runs every component as its own process. Used by `laoke run` and by the test fixtures."""
