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


def test_only_the_functions_whose_code_changed_restart(stack):
    # Nothing changed since they started: nothing restarts.
    assert stack.stop_changed_functions() == []
    before = stack.layout.read_state()
    # As if settle's code had been edited since it started (its recorded fingerprint no longer matches).
    state = stack.layout.read_state()
    state["function_code"]["settle"] = "before the edit"
    stack.layout.write_state(state)
    assert stack.stop_changed_functions() == ["settle"]
    assert not is_alive(before["functions"]["settle"])
    after = stack.up()
    assert after["functions"]["settle"] != before["functions"]["settle"]
    assert {name: pid for name, pid in after["functions"].items() if name != "settle"} == {
        name: pid for name, pid in before["functions"].items() if name != "settle"}
    assert all(is_alive(pid) for pid in after["functions"].values())
    assert after["function_code"] == before["function_code"]
