#!/bin/sh
# dockyard's Buildbot container: a master and its local worker under one persistent home.
# Both directories are created on the first start only, so builds and the database survive
# container recreation; master.cfg always comes from the image, so image updates apply.
set -eu

home=/var/lib/buildbot
master="$home/master"
worker="$home/worker"
mkdir -p "$home"

if [ ! -s "$home/worker-password" ]; then
    (umask 077 && head -c 24 /dev/urandom | base64 >"$home/worker-password")
fi
if [ ! -f "$master/buildbot.tac" ]; then
    # --no-logrotate: the tac file leaves logging to twistd3, which writes to stdout below.
    buildbot create-master --no-logrotate "$master"
fi
ln -sf /etc/dockyard/buildbot/master.cfg "$master/master.cfg"
if [ ! -f "$worker/buildbot.tac" ]; then
    buildbot-worker create-worker "$worker" localhost:9989 local "$(cat "$home/worker-password")"
    echo "dockyard" >"$worker/info/admin"
    echo "the worker in dockyard's buildbot container" >"$worker/info/host"
fi

# A pid file left by a killed container may name a live process after a restart.
rm -f "$master/twistd.pid" "$worker/twistd.pid"
# --quiet: start it in the background without waiting for the master, which starts next.
buildbot-worker start --quiet "$worker"

cd "$master"
exec twistd3 --nodaemon --no_save --pidfile= --logfile=- --python=buildbot.tac
