cd /workspace
mkdir -p site && echo "hello $SEED" > site/index.html
python3 - "$SEED" <<'PY'
import http.server, random, sys, threading, urllib.request, functools
rnd = random.Random(int(sys.argv[1]))
handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory="site")
class Quiet(handler.func):
    def log_message(self, *a): pass
srv = http.server.ThreadingHTTPServer(("127.0.0.1", 8000), functools.partial(Quiet, directory="site"))
threading.Thread(target=srv.serve_forever, daemon=True).start()
n = rnd.randint(3, 20)
for _ in range(n):
    urllib.request.urlopen("http://127.0.0.1:8000/index.html").read()
srv.shutdown()
print(n, "requests")
PY
