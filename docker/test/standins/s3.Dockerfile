# Stand-in for minio/minio and minio/mc where no registry is reachable: moto's S3 server (as the
# cluster tests use) behind the two commands docker/compose.yaml runs, `minio server ...` and
# `mc alias set / mb --ignore-existing / ready local` (s3_standin.py).
ARG BASE_IMAGE=sweeper-test-base:torch2.14.1
FROM ${BASE_IMAGE}
RUN --mount=type=secret,id=ca-bundle \
    if [ -s /run/secrets/ca-bundle ]; then export PIP_CERT=/run/secrets/ca-bundle; fi \
 && python -m pip install --no-cache-dir "moto[server]>=5,<6" "boto3>=1.28,<2"
COPY s3_standin.py /usr/local/bin/s3_standin.py
RUN printf '#!/bin/sh\nexec python /usr/local/bin/s3_standin.py mc "$@"\n' >/usr/local/bin/mc \
 && printf '#!/bin/sh\nexec python /usr/local/bin/s3_standin.py minio "$@"\n' >/usr/local/bin/minio \
 && chmod +x /usr/local/bin/mc /usr/local/bin/minio
ENTRYPOINT ["minio"]
