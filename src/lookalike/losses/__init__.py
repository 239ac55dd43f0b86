"""Metric-learning losses (kind ``loss``)."""
