#!/usr/bin/env python3
"""The floor of unpacking a tree of small files: creates LISTING's directories and files, every
file empty, under ROOT (which must not exist), and nothing else. build/bench.sh's unpacking
section times it against `dockersave --rootfs` of the same image, to show how much of that is
the filesystem making files, which every tool pays.

    create_floor.py LISTING ROOT

LISTING holds `find -printf '%y %P\\0'` records, parents before their entries: `d PATH` for a
directory, anything else for a file.
"""
import os
import sys

listing, root = sys.argv[1:3]
os.mkdir(root)
with open(listing, "rb") as f:
    records = f.read().split(b"\0")
for record in records:
    if not record:
        continue
    kind, path = record[:1], os.path.join(root.encode(), record[2:])
    if kind == b"d":
        os.mkdir(path)
    else:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
