"""Bytes in and out, safely: compressors, validation of what is read, the result cache, code bytes."""
