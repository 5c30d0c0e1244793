"""The SSRF guard and the Standard Webhooks signature."""

import pytest

from shared.notify.channels import UnsafeUrl, check_webhook_url, sign


@pytest.mark.parametrize("url", ["http://example.com/hook", "https://127.0.0.1/hook", "https://10.1.2.3/hook",
                                 "https://169.254.169.254/latest/meta-data", "https://[::1]/hook",
                                 "https://192.168.0.10/hook", "ftp://127.0.0.1/hook"])
def test_the_guard_refuses_non_https_and_non_public_addresses(url):
    with pytest.raises(UnsafeUrl):
        check_webhook_url(url, allow_loopback=False)


def test_loopback_is_allowed_only_with_the_local_flag():
    check_webhook_url("http://127.0.0.1:8080/hook", allow_loopback=True)
    with pytest.raises(UnsafeUrl):
        check_webhook_url("http://10.0.0.1/hook", allow_loopback=True)
    check_webhook_url("https://8.8.8.8/hook", allow_loopback=False)


def test_signature_matches_the_standard_webhooks_example():
    # The example from the Standard Webhooks specification.
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = b'{"test": 2432232314}'
    assert sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body) == \
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
