"""Messaging: channels, templates, consent, frequency caps, campaigns and automations."""
