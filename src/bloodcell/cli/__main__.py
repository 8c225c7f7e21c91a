"""`python -m bloodcell.cli` (what the allocator re-executes): the `bloodcell` command."""

import sys

from bloodcell.cli import main

sys.exit(main())
