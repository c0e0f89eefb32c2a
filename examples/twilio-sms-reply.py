#!/usr/bin/env python3
# Sends an SMS reply to a hub as Twilio's inbound webhook would: the form Twilio posts, signed
# with the account's auth token over the hub's --public-url, the path and the sorted fields.
#
#   python3 examples/twilio-sms-reply.py HUB AUTH_TOKEN FROM BODY MESSAGE_SID
#   python3 examples/twilio-sms-reply.py http://127.0.0.1:8080 walkthrough-token +15551230002 ACK SM0001
#
# HUB must be the hub's --public-url. Prints the hub's TwiML answer.
import base64, hashlib, hmac, sys, urllib.parse, urllib.request

hub, token, sender, body, sid = sys.argv[1:6]
url = f"{hub}/api/inbound/twilio/sms/"
fields = {"From": sender, "To": "+15005550006", "Body": body, "MessageSid": sid}
signed = url + "".join(k + v for k, v in sorted(fields.items()))
signature = base64.b64encode(hmac.new(token.encode(), signed.encode(), hashlib.sha1).digest()).decode()
request = urllib.request.Request(url, data=urllib.parse.urlencode(fields).encode(),
                                 headers={"X-Twilio-Signature": signature})
print(urllib.request.urlopen(request).read().decode())
