"""The `corral` command: argument parsing, the API client, output, and `corral up`."""
