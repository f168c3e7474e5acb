"""``python -m segzero_tool.training`` = ``segzero-train`` (for ``accelerate launch -m``)."""

from .train import main

raise SystemExit(main())
