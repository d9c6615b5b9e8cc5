# A local stand-in for the Python + torch base images docker/Dockerfile is meant for
# (pytorch/pytorch: Python on PATH, pip-installable, torch and torchvision in it), for machines
# that reach no container registry. docker/test/build_base.sh makes ROOTFS_IMAGE with debootstrap
# and `docker import`: Debian's Python 3.11 with torch and torchvision in the venv /opt/venv.
ARG ROOTFS_IMAGE=sweeper-test-rootfs:latest
FROM ${ROOTFS_IMAGE}
# The venv plays the role of pytorch/pytorch's /opt/conda: `python` and `pip` on PATH, and a
# site-packages that `pip install` may write to (Debian's own Python refuses, PEP 668).
ENV PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    LANG=C.UTF-8 \
    DEBIAN_FRONTEND=noninteractive
CMD ["bash"]
