"""catalytic-hooks: make catalytic work in a git repository provable."""

__version__ = "0.1.0"
