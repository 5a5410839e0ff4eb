# BatchOps on the official Airflow image (Airflow 3.3.2, Python 3.11).
FROM apache/airflow:3.3.2-python3.11

# Tesseract and Poppler come from the OS packages (scripts/pdf_to_csv.py needs their binaries).
USER 0
RUN apt-get update \
    && apt-get install -y --no-install-recommends tesseract-ocr tesseract-ocr-eng tesseract-ocr-osd poppler-utils \
    && apt-get clean \
    && rm -rf /var/lib/apt/lists/*

# Everything else runs as the unprivileged airflow user (uid 50000) of the base image.
USER 50000
WORKDIR /opt/batchops
COPY --chown=50000:0 requirements.txt constraints.txt ./
RUN pip install --no-cache-dir -r requirements.txt -c constraints.txt
COPY --chown=50000:0 pyproject.toml README.md ./
COPY --chown=50000:0 src ./src
RUN pip install --no-cache-dir --no-deps .

# dags/, plugins/, include/, data/, runs/ and warehouse/ are mounted by docker-compose.yaml.
ENV BATCHOPS_HOME=/opt/airflow
WORKDIR /opt/airflow
