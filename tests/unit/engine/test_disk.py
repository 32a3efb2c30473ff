"""df output in, free space out."""

from dockyard.engine import disk

DF = """Filesystem     1024-blocks     Used Available Capacity Mounted on
/dev/vda         263174212 26000000 80000000      25% /var/lib/docker
"""


def test_df_output_is_read_in_bytes():
    found = disk.parse_df(DF, "/var/lib/docker")
    assert found == disk.DiskUse("/var/lib/docker", 263174212 * 1024, 80000000 * 1024)
    assert disk.summary(found).startswith("76.3 GiB free of 251.0 GiB")
    assert disk.parse_df("df: /x: No such file", "/x") is None


def test_a_full_one_is_marked():
    full = disk.DiskUse("/var/lib/docker", 2**30, 10 * 2**20)
    assert disk.summary(full) == "FULL: 10 MiB free of 1.0 GiB (1%)"
