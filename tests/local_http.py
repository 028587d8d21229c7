"""A ThreadingHTTPServer on 127.0.0.1 in a background thread, for the download tests (no network)."""
import http.server
import threading


class LocalHttpServer:
    """Serves `handler` (a request handler class or factory) on a free port of 127.0.0.1."""

    def __init__(self, handler):
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)
