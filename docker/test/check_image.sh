# Sourced by run.sh: the image as users get it. Non-root, no source tree, the base's torch kept,
# the three role commands on PATH; prints its size. One container for all of it: starting one
# (and importing torch) is the slow part.
check_image() {
    local image=$1 base=$2 base_torch facts
    base_torch=$("$DOCKER" run --rm --network host "$base" python -c "from importlib.metadata import version as v; import torch; print(torch.__version__, v('torchvision'))")
    # shellcheck disable=SC2016  # expanded in the container
    facts=$("$DOCKER" run --rm --network host -e BASE_TORCH="$base_torch" "$image" bash -ec '
        [ "$(id -u)" = 1000 ] || { echo "runs as uid $(id -u), not 1000" >&2; exit 1; }
        for c in sweeper ray mlflow; do command -v "$c" >/dev/null || { echo "$c not on PATH" >&2; exit 1; }; done
        # Installed from a wheel: no copy of the repository anywhere it could be run from.
        for p in /src sweeper trainables pyproject.toml tests; do [ ! -e "$p" ] || { echo "source left in the image: $p" >&2; exit 1; }; done
        python - <<"PY"
import os, sweeper, trainables, torch
from importlib.metadata import version
for m in (sweeper, trainables):
    assert "site-packages" in m.__file__, m.__name__ + " imported from " + m.__file__
have = torch.__version__ + " " + version("torchvision")
base = os.environ["BASE_TORCH"]
assert have == base, "torch/torchvision " + have + " in the image, " + base + " in the base"
PY
        echo "user $(id -un) (uid $(id -u)); torch, torchvision as in the base: $BASE_TORCH"
        echo "$(sweeper --version); $(ray --version); $(mlflow --version)"')
    while IFS= read -r line; do say "in the image: $line"; done <<<"$facts"
    say "image size: $("$DOCKER" image inspect -f '{{.Size}}' "$image" | awk '{printf "%.2f GB", $1/1e9}') (base $("$DOCKER" image inspect -f '{{.Size}}' "$base" | awk '{printf "%.2f GB", $1/1e9}'))"
}
