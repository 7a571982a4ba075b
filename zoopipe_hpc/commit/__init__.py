"""The commit layer: staging folders, locks, durable writes, and the transaction that publishes
every target of a run together or none of them."""

__all__: list[str] = []
