#!/bin/sh
# Installs the servers the centre runs against (mosquitto, redis-server) when they are
# missing, and with the argument `test` also the browser the console tests drive
# (Debian's chromium).
# As root it uses apt-get; otherwise it says exactly what to install.
missing=""
have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/usr/bin/$1" ]; }
have mosquitto || missing="$missing mosquitto"
have mosquitto_pub || missing="$missing mosquitto-clients"
have redis-server || missing="$missing redis-server"
python3 -c "import ensurepip, venv" >/dev/null 2>&1 || missing="$missing python3-venv"
[ "$1" = "test" ] && ! have chromium && missing="$missing chromium"
[ -z "$missing" ] && exit 0
echo "responsecentre: installing missing system packages:$missing"
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq $missing >/dev/null && exit 0
    echo "apt-get install failed." >&2
elif command -v sudo >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null && exit 0
fi
echo "Please install:$missing   (Debian/Ubuntu: sudo apt-get install$missing; macOS: brew install mosquitto redis chromium)" >&2
exit 1
