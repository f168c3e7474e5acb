"""Default limits shared by light modules (importing this costs nothing)."""

#: Largest image accepted by default, in pixels (a decompression-bomb guard): 100 MP.
DEFAULT_MAX_PIXELS = 100_000_000
