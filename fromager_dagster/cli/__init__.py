"""The command line: fromager-compatible commands."""
