"""Shared pytest configuration: every test runs in CI, e2e and slow included."""
