"""The local stack's `up` is idempotent: a second call reuses every running part."""

from shared.stack.processes import is_alive


def test_up_twice_reuses_every_running_part(stack):
    before = stack.layout.read_state()
    after = stack.up()
    assert after["emulator_pid"] == before["emulator_pid"]
    assert after["anvil_pid"] == before["anvil_pid"]
    assert after["escrow_address"] == before["escrow_address"]
    assert after["functions"] == before["functions"]
    assert all(is_alive(pid) for pid in after["functions"].values())
    assert {status for _, _, status in stack.status()} == {"up"}
