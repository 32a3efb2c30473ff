from dockyard.pool import inventory


def test_engine_labels_carry_pool_age_warmth_and_only_a_given_cache_key():
    plain = inventory.engine_labels("ci", warm=2, created="100", cache_key=None)
    assert plain == {inventory.POOL: "ci", inventory.CREATED: "100", inventory.WARM: "2"}
    keyed = inventory.engine_labels("ci", warm=0, created="100", cache_key="repo")
    assert keyed[inventory.CACHE_KEY] == "repo"
    assert keyed[inventory.WARM] == "0"
