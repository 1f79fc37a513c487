#!/bin/sh
# Remakes docs/img/dashboard.png and docs/img/dashboard-phone.png: runs the
# browser test of the admin dashboard with about 45 seconds of traffic and
# saves its screenshots there. Needs Chromium (apt-get install chromium).
set -eu
cd "$(dirname "$0")/.."
if ! command -v chromium >/dev/null && ! command -v chromium-browser >/dev/null && ! command -v google-chrome >/dev/null; then
	echo "dashboard-screenshot: no chromium, chromium-browser or google-chrome on PATH (apt-get install chromium)" >&2
	exit 1
fi
PORTA_SCREENSHOT_DIR="$PWD/docs/img" go test -count=1 -run '^TestDashboardInBrowser$' -v ./admin
