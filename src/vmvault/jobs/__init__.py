"""The long-running server: scheduler, job workers, and the REST API it hosts."""
