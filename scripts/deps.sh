#!/usr/bin/env bash
# Installs what plait needs from Debian packages, only what is missing (idempotent; fast when all is there).
set -euo pipefail
packages=(cmake g++ make libopenmpi-dev openmpi-bin catch2 libthrust-dev libcub-dev libopenblas-openmp-dev nlohmann-json3-dev libcli11-dev libxxhash-dev)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "plait: installing ${missing[*]}"
  sudo_cmd=()
  [[ $(id -u) -ne 0 ]] && sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
