"""LangChain tool and LangGraph agents for segzero-tool (``segzero_tool.agents``). Implemented in a later issue."""
