"""The command line: Typer commands and rendering only; `main` is the console entry point."""
