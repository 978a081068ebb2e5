#!/usr/bin/env bash
# Make sure the tools the local Kafka broker needs are present: Java 17+ and Maven.
# Installs them from Debian's packages when missing and we may (root or passwordless sudo).
set -euo pipefail

have_java17() {
  command -v java >/dev/null 2>&1 || return 1
  local version
  version=$(java -version 2>&1 | awk -F'"' '/version/ {print $2; exit}')
  [ "${version%%.*}" -ge 17 ] 2>/dev/null
}

missing=()
have_java17 || missing+=(openjdk-17-jre-headless)
command -v mvn >/dev/null 2>&1 || missing+=(maven)
[ ${#missing[@]} -eq 0 ] && exit 0

echo "installing: ${missing[*]}" >&2
if [ "$(id -u)" -eq 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
else
  echo "error: need ${missing[*]} (Java 17+ and Maven run the local Kafka broker); install them and retry" >&2
  exit 1
fi
