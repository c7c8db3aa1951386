"""Segmentation: customer profiles, RFM, lifecycle labels, tags, groups and segments."""
