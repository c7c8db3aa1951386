"""Laoke shared kernel: event contracts, service plumbing and test fixtures used by every service."""
