# Sourced by run.sh: the image as users get it. Non-root, no source tree, the base's torch kept,
# the three role commands on PATH; prints its size.
check_image() {
    local image=$1 base=$2
    local in_image=("$DOCKER" run --rm --network host "$image")
    local uid base_torch image_torch where
    uid=$("${in_image[@]}" id -u)
    [ "$uid" = 1000 ] || { echo "image runs as uid $uid, not 1000" >&2; return 1; }
    # shellcheck disable=SC2016  # expanded in the container
    "${in_image[@]}" bash -c 'for c in sweeper ray mlflow; do command -v "$c" >/dev/null || { echo "$c not on PATH" >&2; exit 1; }; done'
    say "in the image: $("${in_image[@]}" sweeper --version), $("${in_image[@]}" ray --version), $("${in_image[@]}" mlflow --version)"
    # The project is installed as a wheel: no sweeper/ or trainables/ folder, no pyproject.toml.
    where=$("${in_image[@]}" python -c "import sweeper, trainables; print(sweeper.__file__, trainables.__file__)")
    case "$where" in *site-packages/sweeper/*site-packages/trainables/*) ;; *) echo "sweeper imported from $where" >&2; return 1 ;; esac
    "${in_image[@]}" bash -c 'test ! -e /src && test ! -e sweeper && test ! -e trainables && test ! -e pyproject.toml && test ! -e tests' \
        || { echo "a source tree is left in the image" >&2; return 1; }
    base_torch=$("$DOCKER" run --rm "$base" python -c "import torch, torchvision; print(torch.__version__, torchvision.__version__)")
    image_torch=$("${in_image[@]}" python -c "import torch, torchvision; print(torch.__version__, torchvision.__version__)")
    [ "$base_torch" = "$image_torch" ] || { echo "torch/torchvision $image_torch in the image, $base_torch in the base" >&2; return 1; }
    say "torch, torchvision kept from the base: $image_torch; user $("${in_image[@]}" id -un) (uid $uid)"
    say "image size: $("$DOCKER" image inspect -f '{{.Size}}' "$image" | awk '{printf "%.2f GB", $1/1e9}') (base $("$DOCKER" image inspect -f '{{.Size}}' "$base" | awk '{printf "%.2f GB", $1/1e9}'))"
}
