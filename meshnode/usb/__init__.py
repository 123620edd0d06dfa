"""USB drives: the drive's files and the two-way merge with a node."""
