"""``python -m segzero_tool.mcp_server`` = ``segzero-mcp``."""

import sys

from .cli import main

sys.exit(main())
