"""labctl package."""
