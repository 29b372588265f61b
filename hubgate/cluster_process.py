"""``python -m hubgate.cluster_process scheduler|worker``: the command of releases before
the runtime moved to :mod:`hubgate.runtime.cluster_process`.

Kept because a batch job queued by an older service runs this command when it starts,
which may be after hubgate was upgraded on the shared file system: its scheduler or
worker must still come up. Backends now start ``python -m hubgate.runtime.cluster_process``.
"""

from __future__ import annotations

import sys

from hubgate.runtime.cluster_process import main

if __name__ == "__main__":
    sys.exit(main())
