"""Portable run archives (DESIGN §12): the canonical zip, BagIt and RO-Crate, the archive store."""
