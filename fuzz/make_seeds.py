#!/usr/bin/env python3
"""Writes the seed corpora under fuzz/seeds/<target>/ from the reference vectors in
providers.md (Appendix A and the webhook payload examples) and from fixtures of the existing
tests. Run from anywhere: `python3 fuzz/make_seeds.py [path/to/providers.md]`."""
import base64, hashlib, hmac, json, os, re, shutil, sys

HERE = os.path.dirname(os.path.abspath(__file__))
REF = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "../../shared/reference/providers.md")
SEEDS = os.path.join(HERE, "seeds")
lines = open(REF, encoding="utf-8").read().split("\n")

def blocks(lo, hi):
    """```json blocks between two line numbers (1-based) of providers.md."""
    out, cur = [], None
    for n, line in enumerate(lines, 1):
        if n < lo or n > hi:
            continue
        if cur is None and line.startswith("```json"):
            cur = []
        elif cur is not None and line.startswith("```"):
            out.append("\n".join(cur)); cur = None
        elif cur is not None:
            cur.append(line)
    return out

def section(title):
    for n, line in enumerate(lines, 1):
        if line.startswith("#") and title in line:
            return n
    raise SystemExit(f"section {title!r} not found in {REF}")

def span(start, end):
    return blocks(section(start), section(end))

def parsed(text):
    try:
        return json.loads(text)
    except ValueError:
        return None

if os.path.isdir(SEEDS):
    shutil.rmtree(SEEDS)
counts = {}
def seed(target, name, data):
    d = os.path.join(SEEDS, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)
    counts[target] = counts.get(target, 0) + 1

compact = lambda v: json.dumps(v, separators=(",", ":"))

# --- Appendix A vectors ---------------------------------------------------------------------
MG_KEY = "key-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
MG_TS, MG_TOKEN = "1529006854", "a8ce0edb2dd8301dee6c2405235584e45aa91d1e9f979f3de0"
MG_SIG = "f3c3c15d8e56a3199c3936bfc3657e89b7c3ce1a2bbd4eae1d941cb9a9a8031e"
assert hmac.new(MG_KEY.encode(), (MG_TS + MG_TOKEN).encode(), hashlib.sha256).hexdigest() == MG_SIG
RS_SECRET, RS_ID, RS_TS = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek", "1614265330"
RS_BODY, RS_SIG = '{"test": 2432232314}', "g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
def resend_sig(id_, ts, body):
    key = base64.b64decode(RS_SECRET[len("whsec_"):])
    return base64.b64encode(hmac.new(key, f"{id_}.{ts}.".encode() + body.encode(), hashlib.sha256).digest()).decode()
assert resend_sig(RS_ID, RS_TS, RS_BODY) == RS_SIG
SG_TS = "1600112502"
SG_SIG = "MEUCIGHQVtGj+Y3LkG9fLcxf3qfI10QysgDWmMOVmxG0u6ZUAiEAyBiXDWzM+uOe5W0JuG+luQAbPIqHh89M15TluLtEZtM="
SG_BODY = ('[{"email":"hello@world.com","event":"dropped","reason":"Bounced Address","sg_event_id":"ZHJvcC0xMDk5NDkxOS1MUnpYbF9OSFN0T0doUTRrb2ZTbV9BLTA",'
           '"sg_message_id":"LRzXl_NHStOGhQ4kofSm_A.filterdrecv-p3mdw1-756b745b58-kmzbl-18-5F5FC76C-9.0",'
           '"smtp-id":"<LRzXl_NHStOGhQ4kofSm_A@ismtpd0039p1iad1.sendgrid.net>","timestamp":1600112492}]\r\n')
assert SG_BODY[:-2] in open(REF, encoding="utf-8").read()
SNS_CERT_URL = "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-fuzz.pem"
TOPIC = "arn:aws:sns:us-east-1:123456789012:ses-events"

# --- SES (1.6) ------------------------------------------------------------------------------
envelopes, ses_events = span("1.6.1 SNS envelope", "1.6.2"), span("1.6.3", "1.7 ")
for i, b in enumerate(envelopes):
    seed("webhook_ses", f"providers_md_envelope_{i}", b)
for i, b in enumerate(ses_events):
    seed("webhook_ses", f"providers_md_event_{i}", "!" + b)
    v = parsed(b)
    if v is not None:
        env = {"Type": "Notification", "MessageId": f"22b80b92-{i}", "TopicArn": TOPIC,
               "Message": compact(v), "Timestamp": "2025-01-01T00:00:00.000Z"}
        seed("webhook_ses", f"providers_md_event_{i}_in_envelope", compact(env))
        env.update({"SignatureVersion": "2", "Signature": base64.b64encode(b"\0" * 256).decode(),
                    "SigningCertURL": SNS_CERT_URL})
        seed("webhook_verify", f"ses_raw_event_{i}", "ses\nraw\nx-amz-sns-message-type: Notification\n\n" + compact(env))
# the reference example of ses/webhook/tests.rs
seed("webhook_ses", "test_reference_example", compact({"Type": "Notification", "MessageId": "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324",
    "TopicArn": TOPIC, "Subject": None, "Message": "{\"eventType\":\"Delivery\",\"mail\":{\"messageId\":\"m\"},\"delivery\":{\"recipients\":[\"a@b.example\"]}}",
    "Timestamp": "2025-01-01T00:00:00.000Z"}))
sub = parsed(envelopes[0]) if envelopes else None
if sub:
    sub["SigningCertURL"] = SNS_CERT_URL
    seed("webhook_verify", "ses_raw_subscription", "ses\nraw\n\n" + compact(sub))
    lam = dict(sub); lam["SigningCertUrl"] = lam.pop("SigningCertURL"); lam["SubscribeUrl"] = lam.pop("SubscribeURL")
    seed("webhook_verify", "ses_raw_lambda_keys", "ses\nraw\n\n" + compact(lam))

# --- Mailgun (2.5) --------------------------------------------------------------------------
signature = {"timestamp": MG_TS, "token": MG_TOKEN, "signature": MG_SIG}
for i, b in enumerate(span("2.5 Webhooks", "## 3.")):
    v = parsed(b)
    if v is None:
        continue
    body = v if "signature" in v else {"signature": signature, "event-data": v}
    seed("webhook_mailgun", f"providers_md_{i}", compact(body))
    seed("webhook_verify", f"mailgun_raw_{i}", "mailgun\nraw\nContent-Type: application/json\n\n" + compact(body))
    seed("webhook_verify", f"mailgun_sign_{i}", "mailgun\nsign\n\n" + compact(body))
# the fixture of mailgun/webhook.rs's test
hard = {"event": "failed", "severity": "permanent", "id": "e1", "timestamp": 1529701969.818, "recipient": "Joan@Example.com",
        "delivery-status": {"code": 550, "message": "smtp; 550 5.1.1 no such user"},
        "message": {"headers": {"message-id": "2018.1@example.org"}},
        "user-variables": {"mailgate_message_id": "msg_01J0000000000000000000000Z"}}
seed("webhook_mailgun", "test_hard_bounce", compact({"signature": signature, "event-data": hard}))

# --- Postmark (3.5) -------------------------------------------------------------------------
basic = "Authorization: Basic " + base64.b64encode(b"hook:s3cret").decode()
for i, b in enumerate(span("3.5 Webhooks", "## 4.")):
    seed("webhook_postmark", f"providers_md_{i}", b)
    seed("webhook_verify", f"postmark_raw_{i}", f"postmark\nraw\n{basic}\n\n" + b)
    seed("webhook_verify", f"postmark_sign_{i}", "postmark\nsign\n\n" + b)
seed("webhook_postmark", "test_bounce_big_id", '{"RecordType":"Bounce","ID":4323372036854775807,"TypeCode":1,"MessageID":"883953f4","Email":"john@example.com","BouncedAt":"2019-11-05T16:33:54.907Z"}')
seed("webhook_postmark", "test_soft", '{"RecordType":"Bounce","ID":5,"TypeCode":4096,"MessageID":"m","Metadata":{"mailgate_message_id":"msg_01J0000000000000000000000Z"}}')

# --- Resend (4.5) ---------------------------------------------------------------------------
for i, b in enumerate(span("4.5 Webhooks", "## 5.")):
    seed("webhook_resend", f"providers_md_{i}", f"msg_{i}\n" + b)
    seed("webhook_verify", f"resend_sign_{i}", f"resend\nsign\nsvix-id: msg_{i}\nsvix-timestamp: {RS_TS}\n\n" + b)
    seed("webhook_verify", f"resend_raw_{i}", f"resend\nraw\nsvix-id: msg_{i}\nsvix-timestamp: {RS_TS}\nsvix-signature: v1,{resend_sig(f'msg_{i}', RS_TS, b)}\n\n" + b)
seed("webhook_resend", "test_tags_list", 'msg_t\n{"type":"email.bounced","created_at":"2026-01-01T00:00:00.000Z","data":{"email_id":"e","to":["a@b.example"],"tags":[{"name":"mailgate_message_id","value":"msg_01J0000000000000000000000Z"}],"bounce":{"type":"Transient"}}}')
seed("webhook_verify", "resend_raw_appendix_a2",
     f"resend\nraw\nsvix-id: {RS_ID}\nsvix-timestamp: {RS_TS}\nsvix-signature: v1,bm90IGl0 v2,xyz v1,{RS_SIG}\n\n{RS_BODY}")
seed("webhook_verify", "resend_raw_appendix_a2_standard_headers",
     f"resend\nraw\nwebhook-id: {RS_ID}\nwebhook-timestamp: {RS_TS}\nwebhook-signature: v1,{RS_SIG}\n\n{RS_BODY}")

# --- SendGrid (5.5) -------------------------------------------------------------------------
seed("webhook_sendgrid", "appendix_a4", SG_BODY)
sg_head = f"x-twilio-email-event-webhook-timestamp: {SG_TS}\n"
seed("webhook_verify", "sendgrid_raw_appendix_a4",
     f"sendgrid\nraw\n{sg_head}X-Twilio-Email-Event-Webhook-Signature: {SG_SIG}\n\n" + SG_BODY)
for i, b in enumerate(span("5.5 Event Webhook", "## 6.")):
    v = parsed(b)
    if v is None:
        continue
    items = v if isinstance(v, list) else [v]
    seed("webhook_sendgrid", f"providers_md_{i}", compact(items))
    seed("webhook_verify", f"sendgrid_sign_{i}", f"sendgrid\nsign\n{sg_head}\n" + compact(items))
    for j, item in enumerate(items):
        seed("webhook_sendgrid", f"providers_md_{i}_{j}", compact([item]))

# --- send requests (1.3-style bodies from the API tests) ------------------------------------
sends = [
    {"from": "Acme <noreply@acme.example>", "to": "ann@example.com", "subject": "Hi", "text": "Hello"},
    {"from": {"email": "noreply@acme.example", "name": "Acme"}, "to": ["ann@example.com", {"email": "bob@example.com", "name": "Bob"}],
     "cc": "c@example.com", "bcc": ["d@example.com"], "reply_to": "Support <help@acme.example>",
     "subject": "Your receipt", "html": "<p>Thanks</p>", "text": "Thanks",
     "headers": {"X-Campaign": "welcome"}, "tags": ["receipt"], "metadata": {"order": "123"},
     "track_opens": True, "track_links": False, "ttl": 3600, "organization": "acme",
     "attachments": [{"filename": "a.txt", "content": "aGVsbG8=", "content_type": "text/plain"},
                     {"filename": "logo.png", "content": "iVBORw0KGgo=", "content_type": "image/png", "content_id": "logo"}]},
    {"from": "noreply@acme.example", "to": "ann@example.com", "usage": "SignIn", "locale": "fr-CA",
     "data": {"code": "123456", "link": "https://acme.example/l?t=x"}, "expires_at": "2026-01-01T00:10:00Z", "environment": "production"},
    {"to": "ann@example.com", "usage": "PasswordReset", "data": {"url": "https://x.example"}},
    {"from": "a@b.example", "to": "ann@example.com", "subject": "Bad\r\nBcc: x@y.example", "text": "x"},
    {"from": "\"Ann, Jr.\" <ann@bücher.example>", "to": "Ünïcode <ü@example.com>", "subject": "=?utf-8?q?x?=", "html": "<b>x</b>",
     "provider_options": {"ses": {"configuration_set": "cs"}}},
]
for i, s in enumerate(sends):
    seed("send_request", f"send_{i}", json.dumps(s, ensure_ascii=False))
# SES send body of Appendix A.1 (a foreign shape: exercises unknown_field)
seed("send_request", "appendix_a1_ses_body", '{"FromEmailAddress":"sender@example.com","Destination":{"ToAddresses":["to@example.net"]},"Content":{"Simple":{"Subject":{"Data":"Hi"},"Body":{"Text":{"Data":"Hello"}}}}}')

# --- provider configuration: DSNs of the tests and docs, chains, JSON forms -----------------
dsns = [
    "capture://default", "smtp://user:pass@smtp.example.com:587?tls=starttls", "smtps://u:p@mail.example.com:465",
    "ses+smtp://AKID:secret@email-smtp.us-east-1.amazonaws.com:587",
    "ses+api://AKIDEXAMPLE:wJalrXUtnFEMI%2FK7MDENG%2BbPxRfiCYEXAMPLEKEY@default?region=us-east-1&endpoint=http://127.0.0.1:9/&max_send_rate=3",
    "ses+api://AK:S@default?region=us-east-1&sns_topic_arn=" + TOPIC,
    "mailgun+api://api:k%2Fy@mg.acme.com?region=EU&webhook_signing_key=whk&timeout_seconds=5",
    "postmark+api://token@default?webhook_username=hook&webhook_password=s3cret",
    "resend+api://re_123@default?endpoint=http://127.0.0.1:4010/&webhook_secret=" + RS_SECRET + "&timeout_seconds=5&from=noreply@acme.com",
    "sendgrid+api://SG.key@default?region=eu&endpoint=http://127.0.0.1:9/&timeout_seconds=2&from=noreply@acme.com&webhook_public_key=%%%",
    "failover(ses+api://AK:S@default?region=us-east-1 postmark+api://t@default)",
    "failover(ses+api://AK:S@default?region=us-east-1&rate_limit=14/s, mailgun+api://api:k@mg.acme.com)?failure_threshold=5&cooldown_seconds=30&sender=Acme%20%3Cnoreply@acme.example%3E",
    "roundrobin(resend+api://re_1@default postmark+api://t@default sendgrid+api://SG.k@default)",
    "failover(roundrobin(capture://default capture://default))",
]
for i, d in enumerate(dsns):
    seed("provider_config", f"dsn_{i}", d)
configs = [
    {"dsn": "capture://default"},
    {"type": "resend", "api_key": "re_test", "webhook_secret": RS_SECRET},
    {"type": "sendgrid", "api_key": "SG.test", "webhook_public_key": "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE83T4O/n84iotIvIW4mdBgQ/7dAfSmpqIM8kF9mN1flpVKS3GRqe62gw+2fNNRaINXvVpiglSI8eNEc6wEA3F+g=="},
    {"type": "ses", "region": "us-east-1", "sns_topic_arn": f"arn:aws:sns:us-east-1:123456789012:other, {TOPIC}"},
    {"primary": {"dsn": "ses+api://AK:S@default?region=us-east-1"}, "failovers": [{"dsn": "postmark+api://t@default"}],
     "circuit": {"failure_threshold": 3, "cooldown_seconds": 60}, "sender": "noreply@acme.example"},
    {"mode": "roundrobin", "providers": [{"dsn": "capture://default"}, {"type": "capture"}]},
    {"dsn": "failover(capture://default capture://default)"},
]
for i, c in enumerate(configs):
    seed("provider_config", f"json_{i}", compact(c))

# --- templates: fields subject, html, text, from, reply_to, cc, bcc, data (NUL-separated) ---
T = [
    ["Code {{code}}", "<p>{{ code }} {{name}}</p>", "{{ code }} {{name}}"],
    ["Code", "<p>\n  {{ code </p>", "x"],
    ["x", "{% for i in range(100000) %}{% for j in range(100000) %}.{% endfor %}{% endfor %}", "x"],
    ["{{ app }}: sign in", "<a href=\"{{ link }}\">{{ code }}</a>{% if user.locale == 'fr-CA' %}Bonjour{% endif %}", "{{ code | upper }}",
     "{{ app }} <noreply@acme.example>", "help@acme.example, \"Ops, Team\" <ops@acme.example>", "{{ user.email }}", ""],
    ["{% set x = items | length %}{{ x }} items", "{% for i in items %}<li>{{ i }}</li>{% endfor %}", "{{ items | join(',') }}",
     "", "", "", "", '{"items":["a","b"],"code":"1"}'],
    ["Hello {{ name | default('there') }}", "", "{{ missing }}"],
    ["{{ code }}\r\nBcc: evil@example.com", "", "x", "evil\n@example.com"],
]
for i, t in enumerate(T):
    seed("template", f"template_{i}", "\0".join(t))

for t in sorted(counts):
    print(f"{t}: {counts[t]} seeds")
