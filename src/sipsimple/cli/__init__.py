"""The `sipsimple` command-line program."""
