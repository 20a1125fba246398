"""meshd package."""
