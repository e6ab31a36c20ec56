"""Guest mount points from a point's /etc/fstab (domain.files: fstab, fstab_volume, with_fstab)."""

from __future__ import annotations

from vmvault.domain.files import Volume, fstab, fstab_volume, resolve, with_fstab

ROOT = Volume("vda", 1, 1 << 20, 8 << 20, None, "ext4", None, "r-uuid", "rootfs")
XFS = Volume("vdb", 1, 1 << 20, 300 << 20, None, "xfs", None, "X-UUID", "fxfs")
LV = Volume("vdb", 2, 301 << 20, 64 << 20, "/old", "ext4", "vg-1/data", "lv-uuid", "")
BARE = Volume("vdc", None, 0, 1 << 30, "/data", "ext4", None, "c-uuid", "")
ALL = [ROOT, XFS, LV, BARE]

TAB = r"""
# comment
UUID=r-uuid  /  ext4  defaults 0 1
LABEL=fxfs /srv/my\040xfs xfs defaults 0 0
/dev/mapper/vg--1-data /srv/lv ext4 defaults 0 2   # trailing comment
/dev/sdz9 /nowhere ext4 defaults 0 0
proc /proc proc defaults 0 0
/swapfile none swap sw 0 0
"""


def test_fstab_lines_are_parsed_with_escapes_and_without_pseudo_entries() -> None:
    assert fstab(TAB) == [
        ("UUID=r-uuid", "/"),
        ("LABEL=fxfs", "/srv/my xfs"),
        ("/dev/mapper/vg--1-data", "/srv/lv"),
        ("/dev/sdz9", "/nowhere"),
        ("proc", "/proc"),
    ]


def test_each_kind_of_spec_names_its_volume() -> None:
    assert fstab_volume(ALL, "UUID=X-uuid") == XFS  # UUIDs compare without case
    assert fstab_volume(ALL, "/dev/disk/by-label/fxfs") == XFS
    assert fstab_volume(ALL, "/dev/disk/by-uuid/lv-uuid") == LV
    assert fstab_volume(ALL, "/dev/vg-1/data") == LV
    assert fstab_volume(ALL, "/dev/mapper/vg--1-data") == LV
    assert fstab_volume(ALL, "/dev/vda1") == ROOT
    assert fstab_volume(ALL, "/dev/vdc") == BARE
    assert fstab_volume(ALL, "LABEL=") is None
    assert fstab_volume(ALL, "proc") is None


def test_fstab_mounts_win_over_last_mounted_on_and_the_rest_keep_theirs() -> None:
    mounted = {v.label: v.mounted_on for v in with_fstab(ALL, ROOT, TAB)}
    assert mounted == {"vda1": "/", "vdb1": "/srv/my xfs", "vg-1/data": "/srv/lv", "vdc": "/data"}
    found = resolve(with_fstab(ALL, ROOT, TAB), "/srv/my xfs/docs/a")
    assert found is not None and found[0].label == "vdb1" and found[1] == "/docs/a"
    found = resolve(with_fstab(ALL, ROOT, TAB), "/etc/fstab")
    assert found is not None and found[0].label == "vda1"


def test_a_root_entry_naming_another_volume_does_not_move_it() -> None:
    mounted = {v.label: v.mounted_on for v in with_fstab(ALL, ROOT, "/dev/vdc / ext4 0 0\n")}
    assert mounted["vda1"] == "/" and mounted["vdc"] == "/data"
