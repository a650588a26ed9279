#!/usr/bin/python3
"""metrics_fetch.py URL OUT - GET URL (a twig process's /metrics, or Prometheus's API) once,
within 10 s, and write the body to OUT. Exit 0 on HTTP 200; 1 on another status (its body is
written all the same); 2 when nothing answered. The tests' small HTTP client: twig's C code
serves HTTP (libmicrohttpd) but has no client of its own."""
import sys
import urllib.error
import urllib.request


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: metrics_fetch.py URL OUT")
    url, out = sys.argv[1], sys.argv[2]
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            body, code = r.read(), r.status
    except urllib.error.HTTPError as e:
        body, code = e.read(), e.code
    except (urllib.error.URLError, OSError) as e:
        print(f"metrics_fetch: {url}: {e}", file=sys.stderr)
        sys.exit(2)
    with open(out, "wb") as f:
        f.write(body)
    sys.exit(0 if code == 200 else 1)


main()
