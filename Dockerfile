# pfsync: the nightly Property Finder sync, next to the Django site it feeds.
# Every RUN step is a script in docker/ that scripts/test also runs (tests/test_docker.py).

FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md manage.py ./
COPY pfsync_app ./pfsync_app
COPY project_settings ./project_settings
COPY docker ./docker
RUN docker/install.sh /opt/venv /src

FROM python:3.11-slim
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    TZ=Asia/Tashkent \
    MEDIA_ROOT=/mhp/media \
    REPORT_FILE=/var/log/pfsync/report.txt \
    STATIC_ROOT=/app/staticfiles \
    PFSYNC_STANDALONE=true
RUN groupadd --system pfsync && useradd --system --gid pfsync --home-dir /app --shell /usr/sbin/nologin pfsync
WORKDIR /app
COPY --from=build /opt/venv /opt/venv
COPY manage.py ./
COPY project_settings ./project_settings
COPY docker ./docker
RUN PFSYNC_STANDALONE=false docker/collectstatic.sh && mkdir -p /mhp/media /var/log/pfsync && chown -R pfsync:pfsync /mhp/media /var/log/pfsync
VOLUME ["/mhp/media", "/var/log/pfsync"]
USER pfsync
ENTRYPOINT ["docker/entrypoint.sh"]
CMD ["scheduler"]
