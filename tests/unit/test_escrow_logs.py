from shared.chain.escrow_logs import chain_log_event_id, usd_from_units


def test_usd_units_keep_all_eight_decimals():
    assert usd_from_units(1_250_50000000) == "1250.50000000"
    assert usd_from_units(1) == "0.00000001"
    assert usd_from_units(0) == "0.00000000"
    assert usd_from_units(10**30) == "10000000000000000000000.00000000"


def test_chain_log_event_id_is_lowercase_and_positional():
    assert chain_log_event_id(1, "0xABCDEF", 7) == "1:0xabcdef:7"
