"""Ingest: every way a shop's orders reach Laoke, buyer identity, and order lifecycle events."""
