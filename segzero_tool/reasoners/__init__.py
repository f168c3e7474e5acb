"""Reasoner backends: :class:`~segzero_tool.reasoners.base.Reasoner` and its implementations.

Backends are imported lazily by :mod:`segzero_tool.backends`; importing this package loads no model
library.
"""

from .base import DEFAULT_MAX_NEW_TOKENS, Reasoner, ReasonerOutput, ReasonerRequest

__all__ = ["DEFAULT_MAX_NEW_TOKENS", "Reasoner", "ReasonerOutput", "ReasonerRequest"]
