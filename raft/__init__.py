"""raft package."""
