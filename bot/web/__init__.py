"""HTTP mode: the gate in front of Bolt, gunicorn's worker, and the server."""
