"""The steps of one backup, each a module: :mod:`.plan` (what to read, how), :mod:`.read`
(the disks into the vault), :mod:`.commit` (indexes → manifest → catalog row) and
:mod:`.cleanup` (undo a failed backup; clean up after a dead one, from its journal).
:class:`vmvault.services.backups.BackupService` runs them in that order."""
