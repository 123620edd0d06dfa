"""Entry storage behind the small Store protocol: an in-memory and a flat-file backend."""

__all__: list[str] = []
