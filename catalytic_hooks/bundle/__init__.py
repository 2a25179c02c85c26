"""Run bundles: model, keys and signing, verification, trust (docs/FORMATS.md §3–§4)."""
