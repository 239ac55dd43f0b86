"""Evaluation: metrics as pure functions and protocols (kind ``protocol``)."""
