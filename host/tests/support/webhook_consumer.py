#!/usr/bin/env python3
"""A webhook consumer for the tests: verifies every delivery with the `standardwebhooks`
package (the Standard Webhooks reference library), independently of Switchboard's own code.

    webhook_consumer.py SECRET [PORT]
        Serves HTTP on loopback (PORT, or a free one) and prints `{"port": N}` first, then one JSON line
        per request: {"ok": true, "id", "timestamp", "signature", "raw", "body"} (answered 204)
        or {"ok": false, "error"} (answered 400).

    webhook_consumer.py --verify SECRET
        Reads {"headers": {...}, "body": "..."} on stdin; exits 0 if it verifies, 1 if not
        (printing the library's reason).
"""
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook


def serve(secret, port):
    hook = Webhook(secret)
    # One line per request, whole: requests are served on several threads.
    printing = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            headers = {k.lower(): v for k, v in self.headers.items()}
            try:
                payload = hook.verify(body, headers)
                out = {
                    "ok": True,
                    "id": headers["webhook-id"],
                    "timestamp": headers["webhook-timestamp"],
                    "signature": headers["webhook-signature"],
                    "raw": body.decode(),
                    "body": payload,
                }
                status = 204
            except Exception as e:  # the library's WebhookVerificationError, or bad JSON
                out = {"ok": False, "error": f"{type(e).__name__}: {e}"}
                status = 400
            with printing:
                print(json.dumps(out), flush=True)
            self.send_response(status)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    print(json.dumps({"port": server.server_address[1]}), flush=True)
    server.serve_forever()


def verify(secret):
    request = json.load(sys.stdin)
    try:
        Webhook(secret).verify(request["body"], request["headers"])
    except Exception as e:
        print(f"{type(e).__name__}: {e}")
        sys.exit(1)
    print("verified")


if __name__ == "__main__":
    if sys.argv[1] == "--verify":
        verify(sys.argv[2])
    else:
        serve(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 0)
