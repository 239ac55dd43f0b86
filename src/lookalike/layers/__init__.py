"""Building blocks (pure functions + thin modules), one concept per file."""
