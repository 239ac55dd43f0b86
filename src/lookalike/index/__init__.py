"""Vector indexes, search and re-ranking."""
