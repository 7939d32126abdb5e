"""One module per CLI verb; see edgekd/cli.py."""
