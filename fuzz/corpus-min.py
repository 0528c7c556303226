#!/usr/bin/env python3
"""Refreshes corpus-min/<target>/ from corpus/<target>/: the inputs that cover the most.

Runs the target's libFuzzer merge over its corpus (as `cargo fuzz cmin` does) to learn what each
input covers, then picks greedily the input that adds the most features not yet covered, up to
100 inputs of at most 16 KiB each and 1 MB in all. Build first:

    RUSTC_BOOTSTRAP=1 cargo fuzz build -s none
    python3 corpus-min.py text_framing binary_framing ...
"""

import os
import shutil
import subprocess
import sys
import tempfile

MAX_INPUTS, MAX_INPUT, MAX_TOTAL = 100, 16 * 1024, 1_000_000
HERE = os.path.dirname(os.path.abspath(__file__))


def features(target, scratch):
    """Each corpus input's path and feature set, from a merge control file."""
    control = os.path.join(scratch, "control")
    out = os.path.join(scratch, "out")
    os.makedirs(out)
    binary = os.path.join(HERE, "target/x86_64-unknown-linux-gnu/release", target)
    subprocess.run(
        [binary, "-merge=1", f"-merge_control_file={control}", "-rss_limit_mb=512",
         "-timeout=10", "-max_len=65536", out, os.path.join(HERE, "corpus", target)],
        check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    lines = open(control).read().split("\n")
    count = int(lines[0])
    paths = lines[2:2 + count]
    found = {}
    for line in lines[2 + count:]:
        if line.startswith("FT "):
            fields = line.split()
            found[paths[int(fields[1])]] = set(fields[2:])
    return found


def select(found):
    covered, chosen, total = set(), [], 0
    candidates = {p for p in found if os.path.getsize(p) <= MAX_INPUT}
    while len(chosen) < MAX_INPUTS and candidates:
        best = max(candidates, key=lambda p: (len(found[p] - covered), -os.path.getsize(p)))
        candidates.discard(best)
        if not found[best] - covered:
            break
        size = os.path.getsize(best)
        if total + size <= MAX_TOTAL:
            chosen.append(best)
            covered |= found[best]
            total += size
    return chosen, covered


for target in sys.argv[1:]:
    with tempfile.TemporaryDirectory() as scratch:
        found = features(target, scratch)
        chosen, covered = select(found)
        everything = set().union(*found.values()) if found else set()
        dst = os.path.join(HERE, "corpus-min", target)
        shutil.rmtree(dst, ignore_errors=True)
        os.makedirs(dst)
        for path in chosen:
            shutil.copy(path, dst)
        print(f"{target}: {len(chosen)} of {len(found)} inputs, "
              f"{len(covered)} of {len(everything)} features")
