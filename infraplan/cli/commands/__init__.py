"""Click commands kept out of cli.py, registered there with `cli.add_command`."""
