"""medzoo export scripts: reproduce checkpoints and fetch data (not part of the installed package)."""
