"""CLI subcommands, one module per area; each registers its commands with @command."""
from fastcourse.autoimport import import_submodules

import_submodules(__name__)
