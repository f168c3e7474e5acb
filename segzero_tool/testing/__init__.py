"""Test helpers: tiny random models built from configs (no downloads, CPU-fast)."""
