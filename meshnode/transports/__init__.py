"""Links that carry replication frames: framing (pure) and the transports around it."""

__all__: list[str] = []
