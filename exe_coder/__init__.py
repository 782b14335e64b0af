"""exe-coder: natural language to signed macOS arm64 executables."""
