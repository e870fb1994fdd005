"""Sending exports out: webhook events and copies to the customer's bucket, from the outbox."""
