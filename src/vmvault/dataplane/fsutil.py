"""Moved to :mod:`vmvault.storage.fsutil` (local file primitives belong to the storage layer).

This name stays an alias of that very module (not a copy), so ``import
vmvault.dataplane.fsutil as f; f.O_DIRECT = 0`` still changes what the storage layer does.
Remove it once ``services/restores.py`` and ``bench/vm.py`` import ``vmvault.storage.fsutil``.
"""

import sys

from vmvault.storage import fsutil as _fsutil
from vmvault.storage.fsutil import TMP_MARK as TMP_MARK
from vmvault.storage.fsutil import fsync_dir as fsync_dir

sys.modules[__name__] = _fsutil
