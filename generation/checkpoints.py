"""``python -m generation.checkpoints NAME DIR``: build a test or benchmark checkpoint.

The builders live in ``generation.testing.checkpoints``; this module keeps the command
short.
"""

import sys

from generation.testing.checkpoints import main

if __name__ == "__main__":
    sys.exit(main())
