"""The services: one per use case (onboarding, the worker, the reconciler, webhook intake,
mailbox events). They apply the domain's decisions through the adapters they are given."""
