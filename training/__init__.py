"""GRPO training of the reasoner (``segzero_tool.training``). Implemented in a later issue."""
