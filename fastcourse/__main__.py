"""`python -m fastcourse ...` is the `fastcourse` command."""

import sys

from fastcourse.cli import main

sys.exit(main())
