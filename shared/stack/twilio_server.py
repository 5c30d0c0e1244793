"""A local server speaking Twilio's `POST /2010-04-01/Accounts/{AccountSid}/Messages.json`.

Basic auth with the account SID and auth token (401, code 20003, otherwise); `To` must be E.164
(400, code 21211, as the real API answers an invalid number); an accepted message answers 201 with the
Message resource (`sid` SM…, `status` queued) and is recorded. With a `StatusCallback`, it then posts
`sent` and `delivered` (`undelivered` for a number ending in 0009) there, signed with X-Twilio-Signature
as Twilio signs them, retrying until the callback answers 2xx.
Run: python -m shared.stack.twilio_server --port N
"""

from __future__ import annotations

import argparse
import base64
import re
import threading
import time
import uuid
from urllib.parse import parse_qs, urlencode

from twilio.request_validator import RequestValidator

from shared.stack.vendor_server import VendorHandler, deliver_callback, make_server

_MESSAGES = re.compile(r"^/2010-04-01/Accounts/(AC[0-9a-f]{32})/Messages\.json$")
# Twilio's test credentials answer this well-formed number with 21211, "not a valid phone number".
INVALID_NUMBER = "+15005550001"
_E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")


class TwilioHandler(VendorHandler):
    def api_post(self, path: str) -> None:
        match = _MESSAGES.match(path)
        if not match:
            return self.reply(404, {"code": 20404, "message": "The requested resource was not found", "status": 404})
        account = match.group(1)
        if not self._authorised(account):
            return self.reply(401, {"code": 20003, "message": "Authenticate", "status": 401})
        body = self.body()
        failure = self.state.next_failure(body)
        if failure:
            return self.reply(failure, {"code": 20500, "message": "injected failure", "status": failure})
        form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
        to = form.get("To", "")
        if not _E164.match(to) or to == INVALID_NUMBER:
            return self.reply(400, {"code": 21211, "message": f"The 'To' number {to} is not a valid phone number.",
                                    "more_info": "https://www.twilio.com/docs/errors/21211", "status": 400})
        sid = "SM" + uuid.uuid4().hex
        self.state.record({"sid": sid, "received_at": time.time(), "form": form})
        if form.get("StatusCallback"):
            threading.Thread(target=_post_statuses, args=(sid, account, self._token(), form), daemon=True).start()
        now = time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime())
        self.reply(201, {"sid": sid, "account_sid": account, "to": to, "from": form.get("From"),
                         "body": form.get("Body"), "status": "queued", "direction": "outbound-api",
                         "date_created": now, "date_updated": now, "num_segments": "1", "price": None,
                         "error_code": None, "error_message": None, "api_version": "2010-04-01",
                         "uri": f"/2010-04-01/Accounts/{account}/Messages/{sid}.json"})

    def _token(self) -> str:
        return base64.b64decode(self.headers["Authorization"][6:]).decode().partition(":")[2]

    def _authorised(self, account: str) -> bool:
        header = self.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return False
        user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        return user == account and bool(password)


def _post_statuses(sid: str, account: str, token: str, form: dict) -> None:
    url = form["StatusCallback"]
    final = "undelivered" if form["To"].endswith("0009") else "delivered"
    for status in ("sent", final):
        params = {"MessageSid": sid, "SmsSid": sid, "AccountSid": account, "MessageStatus": status,
                  "SmsStatus": status, "To": form["To"], "From": form.get("From", ""), "ApiVersion": "2010-04-01"}
        if status == "undelivered":
            params["ErrorCode"] = "30003"
        signature = RequestValidator(token).compute_signature(url, params)
        deliver_callback(url, urlencode(params).encode(), {
            "Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": signature})


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    make_server(TwilioHandler, parser.parse_args().port).serve_forever()
