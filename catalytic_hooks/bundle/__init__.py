"""Run bundles: model, keys and signing, verification, trust (FORMATS.md §3–§4)."""
