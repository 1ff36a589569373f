"""The `spanqa` command, one module per command group; `main.main` is the entry point."""
