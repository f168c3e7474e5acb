"""MCP server for segzero-tool (``segzero_tool.mcp_server``). Implemented in a later issue."""
