"""Load benchmark for mp-service-account: the real app over HTTP, driven exactly as Slack drives it.

Run from the repository root::

    python -m bench                  # full run (~2-3 minutes): levels 1, 10, 50 people, plus the baseline
    python -m bench --quick --levels 1,5 --no-baseline    # smoke run

The app runs as a subprocess, started as the README starts it (``python app.py --mode http``); the fake
Slack Web API (with response URLs) and the fake Mixpanel run inside the benchmark process on loopback.
The baseline is the same handlers behind Bolt's development server (``bench/baseline_server.py``).
"""
