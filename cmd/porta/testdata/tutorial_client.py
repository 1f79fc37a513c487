#!/usr/bin/env python3
"""A socket client written the way the Python socket tutorials write one.

Usage: tutorial_client.py HOST PORT

It sends each message with no delimiter and takes one recv as the reply,
so it works against a server that reads raw messages: "porta serve" with
its default framing, auto, which sees no newline in the first read and
chooses raw.
"""

import socket
import sys

host = sys.argv[1]
port = int(sys.argv[2])

s = socket.socket()
s.connect((host, port))

for message in [b"Hello", b"How are you?", b"porta is listening"]:
    s.send(message)
    data = s.recv(1024)
    print("Received:", data.decode())

s.send(b"close")
data = s.recv(1024)
print("Received:", data.decode())

data = s.recv(1024)
print("After close:", repr(data))
s.close()
