"""Command-line tools (absl flags); scripts/*.py and the console scripts call their run()."""
