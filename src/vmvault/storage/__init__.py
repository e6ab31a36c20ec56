"""Storage backends for vault data (local directory today; S3-compatible later)."""
