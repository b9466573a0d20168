"""Session records: the document stream on disk, and replays of it."""
