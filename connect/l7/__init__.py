"""L7 traffic management: config entries, the discovery chain, decision cores."""
