"""The chronicle rendered as one static, self-contained HTML page (DESIGN §14)."""
