# LUC as compose.yaml runs it: the project itself, installed with pip, on all interfaces.
FROM python:3.12-slim

WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY service ./service
COPY db ./db
COPY deploy ./deploy
# A plain install: the wheel carries the migrations (db/) and the Grafana role (deploy/)
# inside the package (setup.py), so nothing of the source tree is needed at run time.
RUN pip install --no-cache-dir . && rm -rf /src
WORKDIR /

# LUC_DATABASE_URL comes from compose.yaml (the postgres service); the data folder keeps the
# gateway's spool.
ENV LUC_HOST=0.0.0.0 \
    LUC_PORT=8000 \
    LUC_DATA_DIR=/var/lib/luc
EXPOSE 8000
CMD ["luc", "serve"]
