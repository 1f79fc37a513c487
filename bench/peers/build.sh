#!/usr/bin/env bash
# build.sh OUTDIR - build porta's comparison peers into OUTDIR:
#   epoll_echo, epoll_load  (C, gcc -O2)
#   tutorial, netpoll, goepoll (Go, using bench/peers/go.mod)
set -euo pipefail

if [ $# -ne 1 ]; then
	echo "usage: $0 OUTDIR" >&2
	exit 2
fi
mkdir -p "$1"
out=$(cd "$1" && pwd)
cd "$(dirname "$0")"

gcc -Wall -O2 -o "$out/epoll_echo" epoll_echo.c
gcc -Wall -O2 -o "$out/epoll_load" epoll_load.c
go build -o "$out/tutorial" ./tutorial
go build -o "$out/netpoll" ./netpoll
go build -o "$out/goepoll" ./goepoll
