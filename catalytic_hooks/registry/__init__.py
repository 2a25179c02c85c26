"""Runs shared through an OCI registry (DESIGN §15): push, pull, the verified cache."""
