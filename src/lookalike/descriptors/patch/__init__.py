"""Local patch descriptors: ``(B, 1, P, P)`` patches in [0, 1] to L2-normalised ``(B, D)`` rows."""
