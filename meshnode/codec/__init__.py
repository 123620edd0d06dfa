"""Wire and file formats. Every module here is pure and raises only DecodeError on bad input."""

__all__: list[str] = []
