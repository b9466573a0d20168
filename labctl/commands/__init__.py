"""The commands of the `labctl` CLI: one module a command, each with add_arguments and run."""
