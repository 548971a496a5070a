#!/usr/bin/env bash
# Installs everything the build and the test suite need on a fresh Debian 12
# machine (run as root; CI runs it with CI=true and no stdin). Idempotent:
# every step checks first and is quick when there is nothing to do.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"

log() { printf '\n==> %s\n' "$*"; }

APT_PACKAGES=(
  protobuf-compiler libprotobuf-dev cmake kcat librdkafka-dev libssl-dev libsasl2-dev
  libzstd-dev liblz4-dev zlib1g-dev etcd-server etcd-client python3-venv
  build-essential pkg-config rapidjson-dev iproute2 nftables faketime
)

# --- Debian packages -------------------------------------------------------
missing=()
for p in "${APT_PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done
if ((${#missing[@]})); then
  log "apt: installing ${missing[*]}"
  SUDO=""
  if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -q
  $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}" </dev/null
else
  log "apt: all ${#APT_PACKAGES[@]} packages present"
fi

# --- Rust components -------------------------------------------------------
if command -v rustup >/dev/null 2>&1; then
  installed="$(rustup component list --installed 2>/dev/null || true)"
  for c in rustfmt clippy; do
    if ! grep -q "^$c" <<<"$installed"; then
      log "rustup: adding $c"
      rustup component add "$c"
    fi
  done
else
  echo "warning: rustup not found; assuming cargo fmt/clippy are available" >&2
fi

# --- Python venv for compat-tests -------------------------------------------
VENV="$REPO/.venv"
REQ="$REPO/compat-tests/requirements.txt"
PY="${PYTHON:-python3}"
if ! command -v "$PY" >/dev/null 2>&1; then PY=/usr/bin/python3; fi

if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import sys' >/dev/null 2>&1; then
  log "venv: creating $VENV with $("$PY" --version 2>&1)"
  rm -rf "$VENV"
  if ! "$PY" -m venv "$VENV"; then
    # A pyenv/other python without ensurepip: fall back to Debian's python3.
    rm -rf "$VENV"
    /usr/bin/python3 -m venv "$VENV"
  fi
fi

stamp="$VENV/.requirements.sha256"
want="$(sha256sum "$REQ" | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  log "venv: installing $(basename "$REQ")"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r "$REQ"
  echo "$want" >"$stamp"
else
  log "venv: requirements up to date"
fi
# Sanity check: every client library and codec imports.
"$VENV/bin/python" - <<'PY'
import confluent_kafka, kafka, aiokafka, pytest, crc32c  # noqa: F401
import kafka.codec as kc, aiokafka.codec as ac
missing = [n for n, ok in [("kafka-python snappy", kc.has_snappy()), ("kafka-python lz4", kc.has_lz4()),
                           ("kafka-python zstd", kc.has_zstd()), ("aiokafka snappy", ac.has_snappy()),
                           ("aiokafka lz4", ac.has_lz4()), ("aiokafka zstd", ac.has_zstd())] if not ok]
if missing:
    raise SystemExit("missing codecs: " + ", ".join(missing))
print("python deps ok: confluent-kafka %s (librdkafka %s), kafka-python %s, aiokafka %s"
      % (confluent_kafka.__version__, confluent_kafka.libversion()[0], kafka.__version__, aiokafka.__version__))
PY
