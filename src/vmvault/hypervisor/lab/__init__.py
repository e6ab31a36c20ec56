"""The lab: real Linux test guests that vmvault builds and runs itself (see docs/lab.md)."""
