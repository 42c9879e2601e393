"""One module per reproduced table, figure or end-to-end run."""
