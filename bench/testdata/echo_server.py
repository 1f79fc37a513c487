"""A plain line echo server, written as the Python tutorials write one.

Used by the bench tests to show that porta bench works against servers
other than porta's. Prints its port on stdout once listening.
"""
import socketserver


class EchoHandler(socketserver.StreamRequestHandler):
    def handle(self):
        for line in self.rfile:
            self.wfile.write(line)


class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True
    request_queue_size = 128


with Server(("127.0.0.1", 0), EchoHandler) as server:
    print(server.server_address[1], flush=True)
    server.serve_forever()
