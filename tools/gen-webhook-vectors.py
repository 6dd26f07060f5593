#!/usr/bin/env python3
"""Webhook signature vectors from an implementation independent of Sigilo's:
Python's hmac and hashlib. Prints Swift literals for Tests/SigiloTenantTests/WhatsAppTests.swift:
(app secret, raw body, the X-Hub-Signature-256 value Meta would send)."""
import hashlib
import hmac
import json

cases = [
    ("appsecret123", '{"object":"whatsapp_business_account","entry":[]}'),
    ("0123456789abcdef0123456789abcdef",
     '{"object":"whatsapp_business_account","entry":[{"id":"102290129340398","changes":[{"value":{"messaging_product":"whatsapp",'
     '"metadata":{"display_phone_number":"15550783881","phone_number_id":"106540352242922"},"contacts":[{"profile":{"name":"Maria"},'
     '"wa_id":"5511987654321"}],"messages":[{"from":"5511987654321","id":"wamid.HBgNNTUxMTk4NzY1NDMyMRUCABIYFjNFQjBDNzE3","timestamp":"1733400000",'
     '"text":{"body":"Ol\u00e1, cad\u00ea meu pedido?"},"type":"text"}]},"field":"messages"}]}]}'),
    ("s\u00e9gredo com espa\u00e7o", "corpo qualquer \u2014 com UTF-8\n"),
]
for secret, body in cases:
    mac = hmac.new(secret.encode(), body.encode(), hashlib.sha256).hexdigest()
    # JSON's escapes for these strings (\\" and \\n) are also Swift's.
    q = lambda s: json.dumps(s, ensure_ascii=False)
    print(f'(secret: {q(secret)}, body: {q(body)}, signature: "sha256={mac}"),')
