"""The store on PostgreSQL: many hosts, advisory locks, monthly partitions, COPY."""
