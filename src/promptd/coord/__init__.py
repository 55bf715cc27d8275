"""State shared between replicas: rate-limit and budget counters, stop signals. In-process or Redis."""
