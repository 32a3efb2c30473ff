#!/bin/sh
echo "hello from a container built inside a dockyard engine ($(cat /etc/hello-build))"
