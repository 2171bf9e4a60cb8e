"""`python -m fastcourse.cli`: the same as the `fastcourse` command."""

import sys

from fastcourse.cli import main

sys.exit(main())
