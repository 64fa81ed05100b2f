# LUC as compose.yaml runs it: the project itself, installed with pip, on all interfaces.
FROM python:3.12-slim

WORKDIR /app
COPY pyproject.toml README.md alembic.ini ./
COPY service ./service
COPY db ./db
# Editable: LUC runs its Alembic migrations at start-up from alembic.ini and db/ beside the
# service package (service/db.py, PROJECT_ROOT), which a plain `pip install .` leaves
# behind in /app while the package goes to site-packages.
RUN pip install --no-cache-dir -e .

# LUC_DATABASE_URL comes from compose.yaml (the postgres service); the data folder keeps the
# gateway's spool.
ENV LUC_HOST=0.0.0.0 \
    LUC_PORT=8000 \
    LUC_DATA_DIR=/var/lib/luc
EXPOSE 8000
CMD ["luc", "serve"]
