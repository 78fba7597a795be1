# Python 3.11 from Debian bookworm: a local stand-in for python:3.11-slim-bookworm (Docker Hub is not reachable).
ARG BASE
FROM ${BASE}
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3.11 python3.11-venv python-is-python3 \
    && rm -rf /var/lib/apt/lists/*
# pip reads the system bundle (which carries this machine's CA), not its own certifi copy.
ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
CMD ["python3"]
