"""ReconcilerFunction: re-queues what lost webhooks stranded; expires stale expectations."""
