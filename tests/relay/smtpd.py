#!/usr/bin/env python3
"""A real SMTP relay for alert-relay's tests, on aiosmtpd (not our code).

It serves STARTTLS (or implicit TLS, or no TLS at all) with AUTH PLAIN and
LOGIN (or XOAUTH2 and OAUTHBEARER, against tokend.py's current access
token) on 127.0.0.1, writes every accepted message to OUTDIR/N.eml, and logs
every session event as one JSON object per line to OUTDIR/events.jsonl, so
a test can prove what the client did or did not send (e.g. no AUTH after a
certificate mismatch). It prints "READY <port>" once listening.
"""
import argparse
import asyncio
import base64
import binascii
import json
import os
import ssl
import sys

from aiosmtpd.controller import Controller
import logging

from aiosmtpd.smtp import MISSING, SMTP, AuthResult, LoginPassword

# aiosmtpd warns about its own deprecated Session.login_data on every AUTH.
logging.getLogger("mail.log").setLevel(logging.ERROR)

p = argparse.ArgumentParser()
p.add_argument("--outdir", required=True)
p.add_argument("--host", default="127.0.0.1", help="address to listen on")
p.add_argument("--port", type=int, default=0)
p.add_argument("--cert")
p.add_argument("--key")
p.add_argument("--implicit", action="store_true", help="TLS from the first byte")
p.add_argument("--no-starttls", action="store_true", help="do not offer STARTTLS")
p.add_argument("--user", default="ossec@example.net")
p.add_argument("--password", default="correct horse battery staple")
p.add_argument("--mechanisms", default="PLAIN LOGIN",
               help="of PLAIN LOGIN XOAUTH2 OAUTHBEARER, which to offer")
p.add_argument("--oauth-token-file",
               help="XOAUTH2/OAUTHBEARER accept only the access token this file holds (tokend.py writes it)")
p.add_argument("--rcpt-reply", default="", help="reply to every RCPT, e.g. '550 5.1.1 no such user'")
p.add_argument("--rcpt-only", default="", help="give --rcpt-reply to this address alone")
p.add_argument("--pipelining", action="store_true", help="announce PIPELINING (RFC 2920)")
# Fault injection for tests/faults: misbehave in the first --fault-count
# transactions (or sessions, for "slow"; -1: always), then behave.
p.add_argument("--quota-after", type=int, default=-1,
               help="after this many messages, answer --quota-reply (until OUTDIR/quota-lifted exists)")
p.add_argument("--quota-reply", default="550 5.4.5 Daily user sending limit exceeded. For more information on Gmail sending limits go to https://support.google.com/a/answer/166852")
p.add_argument("--quota-at", choices=["mail", "data"], default="mail",
               help="where the quota reply comes: to MAIL FROM (Gmail) or after the message (Microsoft)")
p.add_argument("--fault", choices=["drop-in-data", "drop-after-dot", "slow"])
p.add_argument("--fault-count", type=int, default=1)
p.add_argument("--fault-delay", type=float, default=10.0, help="seconds before each reply when slow")
args = p.parse_args()

events_path = os.path.join(args.outdir, "events.jsonl")
counter = {"n": 0, "faults": args.fault_count, "started": False}


def take_fault(kind):
    """Whether this transaction (or session) gets fault `kind`."""
    if args.fault != kind or counter["faults"] == 0:
        return False
    counter["faults"] -= 1
    return True


def over_quota(at):
    """Whether the account's sending quota is used up, at this stage."""
    return (
        args.quota_after >= 0
        and args.quota_at == at
        and counter["n"] >= args.quota_after
        and not os.path.exists(os.path.join(args.outdir, "quota-lifted"))
    )


def event(kind, session, **extra):
    # aiosmtpd sets session.ssl after STARTTLS only; implicit TLS is TLS throughout.
    tls = args.implicit or (session is not None and session.ssl is not None)
    extra.update(event=kind, tls=tls)
    with open(events_path, "a") as f:
        f.write(json.dumps(extra) + "\n")


class Handler:
    async def auth_XOAUTH2(self, server, args_):
        return await bearer(server, args_, "XOAUTH2", parse_xoauth2)

    async def auth_OAUTHBEARER(self, server, args_):
        return await bearer(server, args_, "OAUTHBEARER", parse_oauthbearer)

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        event("ehlo", session, host=hostname)
        session.host_name = hostname
        if args.pipelining:
            # aiosmtpd reads commands one by one from its stream, so
            # pipelined commands work; it just does not announce it.
            responses.insert(1, "250-PIPELINING")
        return responses

    async def handle_MAIL(self, server, session, envelope, address, options):
        event("mail", session, address=address, auth=bool(session.authenticated))
        if over_quota("mail"):
            event("quota", session, stage="mail")
            return args.quota_reply
        envelope.mail_from = address
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, options):
        event("rcpt", session, address=address)
        if args.rcpt_reply and args.rcpt_only in ("", address):
            return args.rcpt_reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if over_quota("data"):
            event("quota", session, stage="data")
            return args.quota_reply
        counter["n"] += 1
        name = "%d.eml" % counter["n"]
        with open(os.path.join(args.outdir, name + ".tmp"), "wb") as f:
            f.write(envelope.original_content or envelope.content)
        os.rename(os.path.join(args.outdir, name + ".tmp"), os.path.join(args.outdir, name))
        event("data", session, file=name, mail_from=envelope.mail_from, rcpt=envelope.rcpt_tos)
        if take_fault("drop-after-dot"):
            # Stored, but the client never hears so: it must send again.
            event("drop", session, stage="after-dot")
            server.transport.abort()
        return "250 2.0.0 Ok: queued as TEST%d" % counter["n"]


def current_token():
    try:
        with open(args.oauth_token_file) as f:
            return f.read().strip()
    except (OSError, TypeError):
        return None


async def bearer(server, args_, mechanism, parse):
    """XOAUTH2 or OAUTHBEARER: the initial response, or one after a 334;
    the token must be the current one, else the error challenge and 535."""
    if len(args_) > 1:
        try:
            blob = base64.b64decode(args_[1], validate=True)
        except binascii.Error:
            return AuthResult(success=False, handled=False, message="501 5.5.2 Can't decode base64")
    else:
        blob = await server.challenge_auth("", encode_to_b64=False)
        if blob is MISSING:
            return AuthResult(success=False, handled=True)
    try:
        user, token = parse(blob.decode())
    except Exception:
        event("auth", server.session, mechanism=mechanism, ok=False, malformed=True)
        return AuthResult(success=False, handled=False, message="501 5.5.2 Malformed " + mechanism)
    ok = token is not None and token == current_token()
    event("auth", server.session, mechanism=mechanism, ok=ok, user=user,
          inline=len(args_) > 1, token_length=len(token or ""))
    if ok:
        return AuthResult(success=True, auth_data=user)
    challenge = json.dumps({"status": "400", "schemes": "Bearer", "scope": "https://mail.google.com/"})
    answer = await server.challenge_auth(challenge)
    event("auth-challenge-answer", server.session, mechanism=mechanism,
          answer=None if answer is MISSING else answer.hex())
    # handled=False: aiosmtpd sends the message (with True, nothing).
    return AuthResult(success=False, handled=False, message="535 5.7.8 Username and Password not accepted")


def parse_xoauth2(text):
    fields = text.rstrip("\x01").split("\x01")
    user = fields[0].removeprefix("user=")
    auth = dict(f.split("=", 1) for f in fields[1:])["auth"]
    return user, auth.removeprefix("Bearer ")


def parse_oauthbearer(text):
    gs2, rest = text.split("\x01", 1)
    assert gs2.startswith("n,a=") and gs2.endswith(","), gs2
    user = gs2[4:-1].replace("=2C", ",").replace("=3D", "=")
    pairs = dict(f.split("=", 1) for f in rest.rstrip("\x01").split("\x01"))
    assert pairs["host"] and pairs["port"].isdigit(), pairs
    return user, pairs["auth"].removeprefix("Bearer ")


def authenticator(server, session, envelope, mechanism, auth_data):
    ok = (
        isinstance(auth_data, LoginPassword)
        and auth_data.login.decode() == args.user
        and auth_data.password.decode() == args.password
    )
    event("auth", session, mechanism=mechanism, ok=ok)
    # handled=False: aiosmtpd then answers 535 itself.
    return AuthResult(success=ok, handled=False)


def tls_context():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(args.cert, args.key)
    return ctx


class LoggingSMTP(SMTP):
    async def _handle_client(self):
        # "slow": this session answers every command (not the greeting)
        # after --fault-delay seconds.
        # The start-up probe's session does not count.
        self.slow = counter["started"] and take_fault("slow")
        self.greeted = False
        if self.slow:
            event("slow", self.session)
        return await super()._handle_client()

    async def push(self, status):
        if self.slow and self.greeted:
            await asyncio.sleep(args.fault_delay)
        self.greeted = True
        return await super().push(status)

    async def smtp_DATA(self, arg):
        if self.envelope.rcpt_tos and take_fault("drop-in-data"):
            # Take the 354 and one line of the message, then hang up.
            await self.push("354 End data with <CR><LF>.<CR><LF>")
            await self._reader.readuntil(b"\r\n")
            event("drop", self.session, stage="in-data")
            self.transport.abort()
            # Let the loss reach the session before it reads the rest of
            # the message as commands.
            await asyncio.sleep(0.05)
            return
        return await super().smtp_DATA(arg)

    async def smtp_STARTTLS(self, arg):
        event("starttls", self.session)
        return await super().smtp_STARTTLS(arg)

    async def smtp_RSET(self, arg):
        event("rset", self.session)
        return await super().smtp_RSET(arg)

    async def smtp_QUIT(self, arg):
        event("quit", self.session, tls=self.session.ssl is not None)
        return await super().smtp_QUIT(arg)


class BearerSMTP(LoggingSMTP):
    # RFC 4954 4: servers must take AUTH lines of 12,288 octets, as
    # Microsoft's does; aiosmtpd's default is SMTP's 1,001.
    line_length_limit = 12288 + 2


class RelayController(Controller):
    def factory(self):
        kwargs = dict(
            authenticator=authenticator,
            # Implicit TLS is TLS too, but aiosmtpd only counts STARTTLS.
            auth_require_tls=not (args.no_starttls or args.implicit),
            auth_exclude_mechanism=[m for m in ("PLAIN", "LOGIN", "XOAUTH2", "OAUTHBEARER")
                                    if m not in args.mechanisms.split()],
        )
        if not args.implicit and not args.no_starttls:
            kwargs.update(tls_context=tls_context(), require_starttls=True)
        smtp = BearerSMTP if args.oauth_token_file else LoggingSMTP
        return smtp(self.handler, **kwargs)

    def _trigger_server(self):
        # The stock probe assumes a fixed port and plain SMTP; ours may be
        # port 0 and TLS-only. Connect once and read the banner.
        import socket
        port = self.server.sockets[0].getsockname()[1]
        with socket.create_connection((args.host, port), timeout=10) as sock:
            if args.implicit:
                ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
                with ctx.wrap_socket(sock) as tls:
                    tls.recv(1024)
            else:
                sock.recv(1024)


controller = RelayController(
    Handler(),
    hostname=args.host,
    port=args.port or 0,
    ssl_context=tls_context() if args.implicit else None,
    ready_timeout=10,
)
controller.start()
counter["started"] = True
port = controller.server.sockets[0].getsockname()[1]
print("READY %d" % port, flush=True)
try:
    sys.stdin.read()  # runs until the test closes our stdin or kills us
finally:
    controller.stop()
