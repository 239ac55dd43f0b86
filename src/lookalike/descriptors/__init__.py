"""Descriptor networks: inputs to L2-normalised ``(N, D)`` rows. ``patch/`` holds local patch descriptors."""
