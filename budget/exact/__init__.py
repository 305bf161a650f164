"""The exact artifact: built, decoded, read from any input file, measured and compared."""
