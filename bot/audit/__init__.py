"""The audit trail: every event stored, then announced; and its export for compliance reviews."""
