# mp-service-account: Socket Mode when SLACK_APP_TOKEN is set, otherwise HTTP on $PORT (/slack/events).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PORT=3000

RUN groupadd --system app && useradd --system --gid app --home-dir /app --shell /usr/sbin/nologin app

WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt

COPY --chown=root:root . .
# The code stays root-owned and read-only to the app; its SQLite database (the default store) lives in
# a volume it can write. Point DATABASE_URL at PostgreSQL in production.
RUN mkdir -p /app/data && chown app:app /app/data
ENV DATABASE_URL=sqlite:////app/data/mp_service_accounts.db
VOLUME ["/app/data"]

USER app
EXPOSE 3000
CMD ["python", "app.py"]
