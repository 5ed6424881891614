# One image for every role (receiver, workers, beat, Flower, sandbox); the command picks the role.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    BDC_VAR_DIR=/app/var

WORKDIR /app
COPY pyproject.toml README.md alembic.ini celeryconfig.py ./
COPY bdc ./bdc
COPY wedof ./wedof
COPY lifecycle ./lifecycle
COPY billing ./billing
COPY privacy ./privacy
COPY worker ./worker
COPY webapp ./webapp
COPY wedof_sandbox ./wedof_sandbox
COPY bench ./bench
RUN pip install . \
    && useradd --create-home --uid 10001 bdc \
    && mkdir -p /app/var && chown bdc /app/var
USER bdc

EXPOSE 8000 5555 8090
CMD ["gunicorn", "--config", "webapp/gunicorn_conf.py", "webapp.wsgi:app"]
