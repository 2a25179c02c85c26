"""The run engine: PRE → journal → guarded command → POST/undo → proof → bundle, and recovery."""
