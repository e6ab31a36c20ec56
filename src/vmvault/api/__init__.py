"""The REST API of ``vmvault serve``."""
