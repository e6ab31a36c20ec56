"""The pure domain: vaults, hosts, VM items, jobs and the rules that govern them.

Nothing here performs I/O or imports anything of vmvault outside ``vmvault.domain``.
"""
