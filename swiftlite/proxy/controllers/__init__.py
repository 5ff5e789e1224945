"""Swift's v1 API controllers: one per kind of path (account, container, object, /info)."""
