"""Plumbing shared by every Laoke service: settings, database, Kafka, outbox, consumers, auth, logging."""
