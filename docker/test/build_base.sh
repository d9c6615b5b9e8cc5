#!/usr/bin/env bash
# Builds the local base image that `make test-docker` builds docker/Dockerfile on, with no
# container registry: debootstrap a Debian root file system, put Python 3.11 with torch and
# torchvision in it, `docker import` it, and add the few settings of base.Dockerfile on top.
#
# torch comes from this machine's own wheel folders and indexes where they hold it (pip's
# --find-links / file:// indexes, as the host's pip is set up), so the multi-GB CUDA build is
# not downloaded again; anything missing comes from PyPI.
#
#   docker/test/build_base.sh IMAGE    # does nothing if IMAGE exists
set -euo pipefail

IMAGE=${1:?usage: build_base.sh IMAGE}
DOCKER=${DOCKER:-docker}
SUITE=${BASE_SUITE:-bookworm}                 # Debian 12: Python 3.11, as the host and the venv
MIRROR=${BASE_MIRROR:-http://deb.debian.org/debian}
TORCH_SPEC=${BASE_TORCH:-torch==2.14.1 torchvision==0.29.1}
CA_BUNDLE=${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
HERE=$(cd "$(dirname "$0")" && pwd)

if "$DOCKER" image inspect "$IMAGE" >/dev/null 2>&1; then
    echo "base image $IMAGE: present"
    exit 0
fi

ROOTFS=$(mktemp -d /var/tmp/sweeper-base-rootfs.XXXXXX)
MOUNTED=()
cleanup() {
    for ((i=${#MOUNTED[@]}-1; i>=0; i--)); do umount "${MOUNTED[$i]}" 2>/dev/null || umount -l "${MOUNTED[$i]}" || true; done
    rm -rf "$ROOTFS"
}
trap cleanup EXIT

echo "base image $IMAGE: debootstrap $SUITE"
nice debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
    "$SUITE" "$ROOTFS" "$MIRROR" >"$ROOTFS.debootstrap.log" 2>&1 \
    || { tail -20 "$ROOTFS.debootstrap.log" >&2; exit 1; }
rm -f "$ROOTFS.debootstrap.log"

# The host's local wheel folders and indexes, read-only at the same paths inside the chroot.
PIP_LOCAL=()
for dir in /opt/wheels /opt/pypi /opt/pypi-more; do
    [ -d "$dir" ] || continue
    mkdir -p "$ROOTFS$dir"
    mount --bind -o ro "$dir" "$ROOTFS$dir" && MOUNTED+=("$ROOTFS$dir")
    mount -o remount,bind,ro "$ROOTFS$dir" 2>/dev/null || true
    if [ -d "$dir/simple" ]; then PIP_LOCAL+=(--extra-index-url "file://$dir/simple"); else PIP_LOCAL+=(--find-links "$dir"); fi
done
mount -t proc proc "$ROOTFS/proc" && MOUNTED+=("$ROOTFS/proc")
cp /etc/resolv.conf "$ROOTFS/etc/resolv.conf"
# The machine's CA bundle (TLS may be re-signed on the way to PyPI): used here, never kept.
# The chroot gets a clean environment: the host's PIP_CERT, SSL_CERT_FILE... name host paths.
IN_ROOT=(env -i HOME=/root PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8)
if [ -f "$CA_BUNDLE" ]; then
    cp "$CA_BUNDLE" "$ROOTFS/tmp/host-ca.crt"
    IN_ROOT+=(PIP_CERT=/tmp/host-ca.crt SSL_CERT_FILE=/tmp/host-ca.crt REQUESTS_CA_BUNDLE=/tmp/host-ca.crt)
fi

echo "base image $IMAGE: python venv with $TORCH_SPEC"
# shellcheck disable=SC2086  # TORCH_SPEC is a list of requirements
nice chroot "$ROOTFS" "${IN_ROOT[@]}" /usr/bin/python3 -m venv /opt/venv
nice chroot "$ROOTFS" "${IN_ROOT[@]}" /opt/venv/bin/python -m pip install --quiet --no-cache-dir \
    --disable-pip-version-check "${PIP_LOCAL[@]}" $TORCH_SPEC
chroot "$ROOTFS" "${IN_ROOT[@]}" /opt/venv/bin/python -c "import torch, torchvision; print('base torch', torch.__version__, 'torchvision', torchvision.__version__)"

for ((i=${#MOUNTED[@]}-1; i>=0; i--)); do umount "${MOUNTED[$i]}" || umount -l "${MOUNTED[$i]}"; done
MOUNTED=()
rm -rf "$ROOTFS/tmp/host-ca.crt" "$ROOTFS/opt/wheels" "$ROOTFS/opt/pypi" "$ROOTFS/opt/pypi-more" \
    "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/root/.cache
: >"$ROOTFS/etc/resolv.conf"

echo "base image $IMAGE: docker import"
ROOTFS_IMAGE="$IMAGE-rootfs"
tar --numeric-owner -C "$ROOTFS" -c . | nice "$DOCKER" import - "$ROOTFS_IMAGE" >/dev/null
nice "$DOCKER" build --quiet -t "$IMAGE" --build-arg "ROOTFS_IMAGE=$ROOTFS_IMAGE" \
    -f "$HERE/base.Dockerfile" "$HERE/empty-context" >/dev/null
echo "base image $IMAGE: built"
