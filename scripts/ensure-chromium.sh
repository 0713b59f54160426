#!/bin/sh
# Install what the browser tests need from Debian when it is missing: chromium (driven by
# Playwright through executable_path=/usr/bin/chromium, never `playwright install`) and a CJK
# font so screenshots of the Chinese UI show characters, not boxes. Needs root (or sudo).
set -e
missing=""
[ -x /usr/bin/chromium ] || missing="chromium fonts-wqy-microhei"
if [ -z "$missing" ] && command -v fc-list >/dev/null 2>&1 && [ -z "$(fc-list :lang=zh 2>/dev/null)" ]; then
    missing="$missing fonts-wqy-microhei"
fi
[ -z "$missing" ] && exit 0
SUDO=""
[ "$(id -u)" = "0" ] || SUDO="sudo"
echo "installing $missing (for the browser tests)"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
