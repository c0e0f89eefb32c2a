#!/usr/bin/env python3
# Sends an email reply to a page, as a mail server would hand it to the hub's SMTP listener
# (--inbound-smtp-bind): From the page's recipient, To the page's Reply-To address, with the
# page quoted below the text as mail programs do (the hub leaves the quote out).
#
#   python3 examples/email-reply.py SMTP_ADDR FROM TO TEXT
#   python3 examples/email-reply.py 127.0.0.1:2525 developer@demo.tickethub.local ack+3-2-…@replies.localhost ACK
#
# Prints the hub's answer (250 and what was done, or the refusal).
import email.message, email.utils, smtplib, sys

addr, sender, to, text = sys.argv[1:5]
host, port = addr.rsplit(":", 1)
message = email.message.EmailMessage()
message["From"], message["To"], message["Subject"] = sender, to, "Re: your page"
message["Message-ID"] = email.utils.make_msgid(domain="example.test")
message.set_content(f"{text}\n\nOn {email.utils.formatdate()}, tickethub wrote:\n> the page\n")
with smtplib.SMTP(host, int(port)) as smtp:
    smtp.ehlo()
    smtp.mail(sender)
    code, said = smtp.rcpt(to)
    if code != 250:
        sys.exit(f"{code} {said.decode()}")
    code, said = smtp.data(message.as_bytes())
    print(code, said.decode())
