"""A real SMTP server (aiosmtpd) for mailgate's provider tests.

Started by `mailgate_testkit::peers::smtp::SmtpPeer`. Configuration is one JSON argument:

  cert_dir     where the CA and server certificate PEM files are written (TLS modes)
  spool        directory where each accepted message is written as N.eml plus N.json (envelope)
  tls          "none" | "starttls" | "implicit"
  require_starttls, auth_user, auth_password, auth_require_tls
  mail_code, data_code   reply with this code (e.g. 451) to MAIL FROM / end of DATA
  data_reply   the text of the 250 reply to DATA (e.g. "Ok 0100-abc" to play SES)

Recipients whose address contains "tempfail" get 451, those containing "reject" get 550.
Prints the chosen port on stdout, then serves until killed.
"""

import asyncio
import datetime
import ipaddress
import json
import os
import ssl
import sys

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


def make_certs(directory):
    """Writes a CA and a server certificate for 127.0.0.1/localhost signed by it."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mailgate test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    paths = {name: os.path.join(directory, name) for name in ("ca.pem", "cert.pem", "key.pem")}
    with open(paths["ca.pem"], "wb") as f:
        f.write(ca.public_bytes(pem))
    with open(paths["cert.pem"], "wb") as f:
        f.write(cert.public_bytes(pem))
    with open(paths["key.pem"], "wb") as f:
        f.write(
            key.private_bytes(
                pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
    return paths


class Handler:
    def __init__(self, opts):
        self.opts = opts
        self.count = 0

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        code = self.opts.get("mail_code")
        if code:
            return f"{code} {'4.3.0' if code < 500 else '5.7.1'} scripted MAIL reply"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if "tempfail" in address:
            return "451 4.2.0 mailbox temporarily unavailable"
        if "reject" in address:
            return "550 5.1.1 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        code = self.opts.get("data_code")
        if code:
            return f"{code} {'4.3.0' if code < 500 else '5.6.0'} scripted DATA reply"
        self.count += 1
        base = os.path.join(self.opts["spool"], f"{self.count:04}")
        with open(base + ".eml.tmp", "wb") as f:
            f.write(envelope.original_content or envelope.content)
        with open(base + ".json", "w") as f:
            json.dump({"mail_from": envelope.mail_from, "rcpt_tos": envelope.rcpt_tos}, f)
        os.rename(base + ".eml.tmp", base + ".eml")
        return "250 " + self.opts.get("data_reply", "OK: queued")


def authenticator(opts):
    def check(server, session, envelope, mechanism, auth_data):
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login.decode() == opts["auth_user"]
            and auth_data.password.decode() == opts["auth_password"]
        )
        return AuthResult(success=ok, handled=False)

    return check


async def main(opts):
    tls = opts.get("tls", "none")
    context = None
    if tls != "none":
        paths = make_certs(opts["cert_dir"])
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(paths["cert.pem"], paths["key.pem"])
    handler = Handler(opts)
    auth = opts.get("auth_user") is not None

    def factory():
        return SMTP(
            handler,
            hostname="localhost",
            enable_SMTPUTF8=True,
            tls_context=context if tls == "starttls" else None,
            require_starttls=bool(opts.get("require_starttls")) and tls == "starttls",
            authenticator=authenticator(opts) if auth else None,
            auth_required=auth,
            auth_require_tls=bool(opts.get("auth_require_tls")) and tls == "starttls",
        )

    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        factory, host="127.0.0.1", port=0, ssl=context if tls == "implicit" else None
    )
    port = server.sockets[0].getsockname()[1]
    print(port, flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(json.loads(sys.argv[1])))
