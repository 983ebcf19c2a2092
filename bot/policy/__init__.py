"""The access policy: the file and its schema, and the pure decisions taken over it."""
