"""Load benchmark for mp-service-account: the real app, driven exactly as Slack drives it.

Run from the repository root::

    python -m bench            # everything (~3 minutes): HTTP mode, Socket Mode, the baseline, the
                               # cold-start level; writes docs/benchmark.txt and docs/benchmark.png
    python -m bench --quick    # the same, 1 round per level (under 2 minutes), writes nothing

Our app runs as a subprocess, started as the README starts it (``python app.py --mode http`` or
``--mode socket``); the fake Slack Web API (with response URLs and a Socket Mode server) and the fake
Mixpanel (slow on every call) run inside the benchmark process on loopback. The baseline is the same
handlers behind Bolt's development server (``bench/baseline_server.py``).
"""
