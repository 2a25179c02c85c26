"""Recorded environments rebuilt (DESIGN §13): rebuild, cache, export."""
