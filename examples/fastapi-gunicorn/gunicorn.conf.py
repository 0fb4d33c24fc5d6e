"""gunicorn settings for the churn example; each can be overridden by the environment."""

import os

bind = os.environ.get("BIND", "127.0.0.1:8000")
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
worker_class = "uvicorn_worker.UvicornWorker"
# Import (train the model, create the Monitor) once in the master, then fork: the setup that
# the SDK has to survive without any help from the application.
preload_app = True
graceful_timeout = 10


def worker_exit(server, worker):  # noqa: ARG001 — gunicorn's hook signature
    # Runs in the worker as it stops: ship its open window now rather than lose it to a
    # SIGKILL after graceful_timeout (the SDK's exit hook would also do it, bounded at 2 s).
    from app import monitor

    monitor.shutdown(5.0)
