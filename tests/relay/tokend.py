#!/usr/bin/env python3
"""An OAuth 2.0 authorization server for alert-relay's tests, over HTTPS on
127.0.0.1 (Python's http.server and ssl, not our code).

- POST /devicecode: the device authorization grant (RFC 8628 3.1).
- GET /authorize: the authorization endpoint of the code grant with PKCE;
  it "signs in" at once and answers 302 to redirect_uri with a code and
  the state, as a browser would be sent.
- POST /token: grant_type device_code (authorization_pending for the
  first --pending polls), authorization_code (the PKCE verifier checked),
  refresh_token (only the current refresh token; with --rotate each
  refresh issues a new one and the old one stops working).

Files in OUTDIR: access_token (the current one, for smtpd.py's XOAUTH2 and
OAUTHBEARER), refresh_token (the current one, for the test to compare),
events.jsonl (one line per request, never a token). A test steers it with
files: OUTDIR/invalid_grant makes every refresh answer invalid_grant,
OUTDIR/down makes every request answer 503, OUTDIR/revoke voids every
refresh token issued so far at the next refresh request, as a revoked
consent does (the file is then removed). It prints "READY <port>".
"""
import argparse
import base64
import hashlib
import http.server
import json
import os
import secrets
import ssl
import sys
import threading
import urllib.parse

p = argparse.ArgumentParser()
p.add_argument("--outdir", required=True)
p.add_argument("--port", type=int, default=0)
p.add_argument("--cert", required=True)
p.add_argument("--key", required=True)
p.add_argument("--client-id", default="alert-relay-test")
p.add_argument("--client-secret", default=None, help="required from the client when set")
p.add_argument("--pending", type=int, default=1, help="polls answered authorization_pending")
p.add_argument("--slow-down", action="store_true", help="answer slow_down to the first poll")
p.add_argument("--expires-in", type=int, default=3600)
p.add_argument("--rotate", action="store_true", help="a new refresh token at each refresh")
p.add_argument("--keep-old", action="store_true",
               help="with --rotate, earlier refresh tokens stay valid, as Microsoft's do")
p.add_argument("--long-tokens", action="store_true",
               help="access tokens of 3,000 characters, as Microsoft's are (2 to 5 KB)")
p.add_argument("--account", default=None,
               help="an OpenID Connect ID token naming this account comes with each grant")
args = p.parse_args()
# Every token starts with it, for a leak scan that looks for all of them;
# from the environment, as the scan reads every process's arguments.
TOKEN_PREFIX = os.environ.get("TOKEND_TOKEN_PREFIX", "")

lock = threading.Lock()
state = {"polls": 0, "refresh": None, "access": None, "codes": {}, "n": 0, "valid": set()}


def path(name):
    return os.path.join(args.outdir, name)


def event(kind, **extra):
    extra["event"] = kind
    with open(path("events.jsonl"), "a") as f:
        f.write(json.dumps(extra) + "\n")


def write(name, value):
    with open(path(name + ".tmp"), "w") as f:
        f.write(value)
    os.rename(path(name + ".tmp"), path(name))


def issued(token):
    """Every token issued, for the tests' leak scan."""
    with open(path("issued_tokens"), "a") as f:
        f.write(token + "\n")


def issue(with_refresh):
    state["n"] += 1
    access = "%sAT-%d-%s" % (TOKEN_PREFIX, state["n"],
                             secrets.token_urlsafe(2200 if args.long_tokens else 24))
    issued(access)
    state["access"] = access
    write("access_token", access)
    body = {"access_token": access, "token_type": "Bearer", "expires_in": args.expires_in,
            "scope": "https://mail.example.org/"}
    if with_refresh:
        refresh = "%sRT-%d-%s" % (TOKEN_PREFIX, state["n"], secrets.token_urlsafe(24))
        issued(refresh)
        state["refresh"] = refresh
        state["valid"].add(refresh)
        write("refresh_token", refresh)
        body["refresh_token"] = refresh
    if args.account:
        # Unsigned, as alert-relay only shows the name (its signature is
        # not what the test is about).
        def part(obj):
            return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()
        body["id_token"] = "%s.%s.%s" % (
            part({"alg": "RS256", "typ": "JWT"}),
            part({"iss": "https://127.0.0.1/", "aud": args.client_id,
                  "preferred_username": args.account, "sub": "1234"}),
            part({"sig": "not checked"}))
    return body


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def answer(self, status, body, headers=()):
        data = json.dumps(body).encode() if body is not None else b""
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def error(self, error, description=""):
        self.answer(400, {"error": error, "error_description": description})

    def do_GET(self):
        url = urllib.parse.urlparse(self.path)
        q = dict(urllib.parse.parse_qsl(url.query))
        if url.path != "/authorize":
            return self.answer(404, None)
        if q.get("client_id") != args.client_id or q.get("code_challenge_method") != "S256":
            event("authorize", ok=False)
            return self.error("invalid_request", "client_id or PKCE missing")
        code = "4/0A-" + secrets.token_urlsafe(12)
        with lock:
            state["codes"][code] = (q["code_challenge"], q["redirect_uri"])
        event("authorize", ok=True, scope=q.get("scope"), access_type=q.get("access_type"))
        location = q["redirect_uri"] + "?" + urllib.parse.urlencode(
            {"state": q.get("state", ""), "code": code, "scope": q.get("scope", "")})
        self.answer(302, None, [("Location", location)])

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        form = dict(urllib.parse.parse_qsl(self.rfile.read(length).decode()))
        url = urllib.parse.urlparse(self.path).path
        if os.path.exists(path("down")):
            event("down", path=url)
            return self.answer(503, None)
        if form.get("client_id") != args.client_id:
            event("token", ok=False, why="client_id")
            return self.answer(401, {"error": "invalid_client", "error_description": "unknown client"})
        if args.client_secret is not None and form.get("client_secret") != args.client_secret:
            event("token", ok=False, why="client_secret")
            return self.answer(401, {"error": "invalid_client", "error_description": "client_secret is missing."})
        with lock:
            if url == "/devicecode":
                event("devicecode", scope=form.get("scope"))
                return self.answer(200, {
                    "device_code": "DC-" + secrets.token_urlsafe(16), "user_code": "WDJB-MJHT",
                    "verification_uri": "https://127.0.0.1/device", "expires_in": 600,
                    "interval": 1,
                })
            if url != "/token":
                return self.answer(404, None)
            grant = form.get("grant_type")
            if grant == "urn:ietf:params:oauth:grant-type:device_code":
                state["polls"] += 1
                event("poll", n=state["polls"])
                if args.slow_down and state["polls"] == 1:
                    return self.error("slow_down")
                if state["polls"] <= args.pending:
                    return self.error("authorization_pending", "AADSTS70016: pending")
                return self.answer(200, issue(True))
            if grant == "authorization_code":
                entry = state["codes"].pop(form.get("code", ""), None)
                verifier = form.get("code_verifier", "")
                challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
                ok = entry is not None and entry[0] == challenge and entry[1] == form.get("redirect_uri")
                event("exchange", ok=ok)
                if not ok:
                    return self.error("invalid_grant", "Bad Request")
                return self.answer(200, issue(True))
            if grant == "refresh_token":
                if os.path.exists(path("revoke")):
                    # Whatever was issued so far is void; what is issued
                    # later (a new sign-in) is not.
                    os.remove(path("revoke"))
                    state["valid"].clear()
                    state["refresh"] = None
                    event("revoked")
                current = form.get("refresh_token") == state["refresh"]
                if args.keep_old:
                    current = form.get("refresh_token") in state["valid"]
                if os.path.exists(path("invalid_grant")) or not current:
                    event("refresh", ok=False)
                    return self.error("invalid_grant", "AADSTS700082: The refresh token has expired due to inactivity.\r\nTrace ID: 0")
                event("refresh", ok=True, scope=form.get("scope"))
                return self.answer(200, issue(args.rotate))
            return self.error("unsupported_grant_type")


os.makedirs(args.outdir, exist_ok=True)
server = http.server.ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(args.cert, args.key)
server.socket = ctx.wrap_socket(server.socket, server_side=True)
print("READY %d" % server.server_address[1], flush=True)
threading.Thread(target=server.serve_forever, daemon=True).start()
sys.stdin.read()  # runs until the test closes our stdin or kills us
